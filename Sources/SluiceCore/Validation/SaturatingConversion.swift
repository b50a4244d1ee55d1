extension Int {
    /// `value` rounded toward zero and clamped to Int's range; 0 for NaN.
    ///
    /// For numbers computed from limits and usage (seconds to wait, tokens left), where an absurd input should
    /// give a large answer, not trap as `Int(_:)` does on a Double it cannot hold.
    public init(saturating value: Double) {
        if value.isNaN {
            self = 0
        } else if value >= 9.223372036854775807e18 {
            self = .max
        } else if value <= -9.223372036854775808e18 {
            self = .min
        } else {
            self = Int(value)
        }
    }
}

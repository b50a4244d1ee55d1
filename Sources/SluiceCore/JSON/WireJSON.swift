import Foundation

/// The one JSON style Sluice writes: sorted keys (stable bytes for tests and cache replays), slashes unescaped.
public enum WireJSON {
    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }
}

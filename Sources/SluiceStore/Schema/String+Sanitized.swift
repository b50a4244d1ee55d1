import Foundation

extension String {
    /// The text without NUL characters, as both stores keep it.
    ///
    /// PostgreSQL refuses NUL in text and SQLite reads text back only up to the first one; a request's model
    /// name can hold one (`"a\u0000b"` in its JSON), and must neither poison a usage batch nor be cut short.
    var sanitized: String {
        // Bytes, not Characters: this runs for every text column of every usage record.
        self.utf8.contains(0) ? self.replacingOccurrences(of: "\u{0}", with: "") : self
    }
}

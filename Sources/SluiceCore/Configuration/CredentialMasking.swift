/// Hides the credentials a URL can carry, so configuration can be shown (`check-config`, `/admin/config`, logs)
/// without leaking them.
///
/// Masks, in any scheme: the password of the userinfo (`http://admin:secret@host`, `postgres://u:p@ss@db`), and the
/// value of every query parameter whose name says it holds a secret (`?password=`, `?sslpassword=`, `?api_key=`,
/// `?token=`, …). Over-masking is preferred to a leak: when an unencoded password holds `/`, `?` or `#`, the last
/// `@` anywhere ends it.
public enum CredentialMasking {
    public static let mask = "***"

    /// Query parameter names (lowercased, `-` read as `_`) whose values are secrets.
    static let secretParameters: Set<String> = [
        "password", "pass", "passwd", "pwd", "sslpassword", "secret", "client_secret", "token", "access_token",
        "auth_token", "api_key", "apikey", "key", "sslkey_password", "authorization",
    ]

    /// The URL with its credentials replaced by `***`; a string that is not a URL comes back unchanged.
    public static func redacted(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        var result = String(url[..<schemeEnd.upperBound])
        var rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        if let at = rest[..<authorityEnd].lastIndex(of: "@") ?? rest.lastIndex(of: "@") {
            let userinfo = rest[..<at]
            if let colon = userinfo.firstIndex(of: ":") {
                result += userinfo[..<colon] + ":" + mask
            } else {
                result += userinfo
            }
            rest = rest[at...]
        }
        guard let query = rest.firstIndex(of: "?") else { return result + rest }
        result += rest[...query]
        let fragmentStart = rest[query...].firstIndex(of: "#") ?? rest.endIndex
        let parameters = rest[rest.index(after: query)..<fragmentStart].split(separator: "&", omittingEmptySubsequences: false)
        result += parameters.map { parameter -> String in
            guard let eq = parameter.firstIndex(of: "=") else { return String(parameter) }
            let name = parameter[..<eq].lowercased().replacingOccurrences(of: "-", with: "_")
            return secretParameters.contains(name) ? parameter[...eq] + mask : String(parameter)
        }.joined(separator: "&")
        return result + rest[fragmentStart...]
    }
}

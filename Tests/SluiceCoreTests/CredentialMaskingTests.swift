import SluiceCore
import Testing

@Suite("Credential masking")
struct CredentialMaskingTests {
    @Test(arguments: [
        ("http://admin:secret@host:11434", "http://admin:***@host:11434"),
        ("https://user:s3cret@api.example/v1", "https://user:***@api.example/v1"),
        // An @ in the password: everything before the last @ of the authority is credentials.
        ("postgres://sluice:p@ss@word@db/sluice", "postgres://sluice:***@db/sluice"),
        ("postgres://sluice@db/sluice?password=hunter2", "postgres://sluice@db/sluice?password=***"),
        ("postgres://db/sluice?sslmode=require&PASSWORD=hunter2&sslpassword=x#frag", "postgres://db/sluice?sslmode=require&PASSWORD=***&sslpassword=***#frag"),
        ("http://host/v1?api-key=abc&x=1", "http://host/v1?api-key=***&x=1"),
        ("http://host:8080", "http://host:8080"),
        ("sqlite:./sluice.db", "sqlite:./sluice.db"),
    ])
    func masks(_ url: String, _ expected: String) {
        #expect(CredentialMasking.redacted(url) == expected)
    }

    @Test(arguments: ["pa/ss", "pa?ss", "pa#ss", "p/a@s?s", "p@ss"])
    func passwordsWithDelimitersNeverShow(_ password: String) {
        for scheme in ["http", "postgres"] {
            let redacted = CredentialMasking.redacted("\(scheme)://user:\(password)@host:1/x")
            #expect(!redacted.contains("ss"), "\(redacted)")
        }
    }
}

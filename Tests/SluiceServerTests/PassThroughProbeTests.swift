import Foundation
import NIOCore
import SluiceCore
import Testing
@testable import SluiceServer

/// The byte-scanned probe must read exactly what `JSONDecoder` reads, or give way to it.
struct PassThroughProbeTests {
    static let bodies = [
        #"{"model":"gpt-4o","messages":[]}"#,
        #"{"messages":[{"role":"user","content":"{\"model\":\"x\"}"}],"model":"llama3.2","stream":true,"stream_options":{"include_usage":true}}"#,
        #"{"model":"m","stream":false,"n":2,"temperature":0.7,"seed":-12}"#,
        #"{"model":"m","temperature":1,"stream":null,"seed":null}"#,
        #" { "model" : "m" , "temperature" : 1e-1 } "#,
        #"{"model":"caf\u00e9"}"#,
        #"{"model":"m","n":2.0}"#,
        #"{"model":"m","n":99999999999999999999}"#,
        #"{"model":"m","stream":"yes"}"#,
        #"{"model":7}"#,
        #"{"model":"m","stream_options":{"include_usage":"no"}}"#,
        #"{"stream":true}"#,
        #"{"model":"gpt-4o","stre\u0061m":true}"#,
    ]

    @Test(arguments: bodies) func scannedProbesMatchTheDecoder(_ text: String) throws {
        let body = ByteBuffer(string: text)
        let decoded = try? JSONDecoder().decode(PassThroughProbe.self, from: body)
        guard let scanned = PassThroughProbe.scanned(body) else { return }
        let expected = try #require(decoded, "the scanner read a body the decoder refuses: \(text)")
        #expect(scanned.model == expected.model && scanned.stream == expected.stream && scanned.n == expected.n)
        #expect(scanned.temperature == expected.temperature && scanned.seed == expected.seed && scanned.streamOptions == expected.streamOptions)
    }

    @Test func theCommonShapesAreScannedAndTheRestDecoded() {
        #expect(PassThroughProbe.scanned(ByteBuffer(string: Self.bodies[1]))?.streamOptions?.includeUsage == true)
        #expect(PassThroughProbe.scanned(ByteBuffer(string: Self.bodies[2]))?.seed == -12)
        // A key spelled with escapes is read by decoders (and the upstream) unescaped: the scanner must not miss it.
        for text in [Self.bodies[5], Self.bodies[6], Self.bodies[8], Self.bodies[9], Self.bodies[11], Self.bodies[12]] {
            #expect(PassThroughProbe.scanned(ByteBuffer(string: text)) == nil, "\(text)")
        }
        #expect(AnthropicPassThroughProbe.scanned(ByteBuffer(string: #"{"model":"claude","max_tokens":5,"stream":true}"#))?.stream == true)
    }

    @Test func topLevelScalarsReadOnlyTheTopLevel() throws {
        let body = ByteBuffer(string: #"{"a":{"model":"inner"},"model":"outer","b":[1,2],"s":"x\"y"}"#)
        let values = try #require(CanonicalJSON.topLevelScalars(["model", "b", "s", "missing"], in: body))
        #expect(values[0] == .string("outer"))
        guard case .other? = values[1], case .other? = values[2] else {
            Issue.record("arrays and escaped strings are left to the decoder: \(values)")
            return
        }
        #expect(values[3] == nil)
        #expect(CanonicalJSON.topLevelScalars(["model"], in: ByteBuffer(string: "[1]")) == nil)
    }
}

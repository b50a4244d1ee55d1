import Foundation
import NIOCore
import NIOFoundationCompat
@testable import SluiceCore

func buffer(_ s: String) -> ByteBuffer { ByteBuffer(string: s) }

func json(_ buffer: ByteBuffer) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: buffer)
}

func json(_ s: String) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: Data(s.utf8))
}

/// Feeds `input` to a translator in pieces of `size` bytes and returns everything it wrote.
func run<T: StreamTranslator>(_ translator: inout T, _ input: String, pieceSize: Int) throws(APIError) -> String {
    let bytes = Array(input.utf8)
    var out = ByteBuffer()
    var i = 0
    while i < bytes.count {
        let end = min(i + pieceSize, bytes.count)
        try translator.translate(ByteBuffer(bytes: bytes[i..<end]), into: &out)
        i = end
    }
    try translator.finish(into: &out)
    return String(buffer: out)
}

/// The `data:` payloads of an SSE text, in order.
func sseData(_ text: String) throws -> [String] {
    var decoder = SSEDecoder()
    return try decoder.feed(ByteBuffer(string: text)).map(\.data)
}

let identity = ResponseIdentity(id: "chatcmpl-test123456789", created: 1_700_000_000)

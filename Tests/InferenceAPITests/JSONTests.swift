import InferenceAPI
import NIOCore
import Testing

@Suite struct JSONTests {
    @Test func parsesNestedDocument() throws {
        let value = try JSONValue.parse(#"{"a": [1, 2.5, "x\n\u00e9\ud83d\ude00", true, null], "b": {"c": -3e2}}"#)
        #expect(value["a"] == .array([.integer(1), .double(2.5), .string("x\né😀"), .bool(true), .null]))
        #expect(value["b"]?["c"] == .double(-300))
    }

    @Test(arguments: ["", "{", #"{"a" 1}"#, "[1,]", "tru", #""abc"#, "{} x", #"{"a":"\ud800"}"#])
    func rejectsMalformed(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func rejectsDeepNesting() {
        let text = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(text) }
    }

    @Test func writerRoundTrips() throws {
        let original: JSONValue = .object(["text": .string("quote \" backslash \\ tab \t ctl \u{01} é"), "n": .integer(7)])
        var buffer = ByteBuffer()
        buffer.writeJSON(original)
        #expect(try JSONValue.parse(buffer) == original)
    }
}

@Suite struct TokenizerTests {
    @Test(arguments: ["Hello, world!", "the quick brown fox jumps over the lazy dog", "Zürich 2024 — naïve café\n\ttabs", ""])
    func decodeInvertsEncode(_ text: String) {
        let tokenizer = Tokenizer.shared
        #expect(tokenizer.decode(tokenizer.encode(text)) == text)
    }

    @Test func countsAreLlamaLike() {
        // About a token per common word, more for rare words: Llama's tokenizers give 10-14 here.
        let ids = Tokenizer.shared.encode("The model serves a request from the queue when the batch has room for it.")
        #expect((10...20).contains(ids.count))
        #expect(ids.allSatisfy { $0 < 32000 })
    }

    @Test func specialTokensPrefixBOS() {
        #expect(Tokenizer.shared.encode("hi", addSpecialTokens: true).first == Tokenizer.bosTokenID)
    }
}

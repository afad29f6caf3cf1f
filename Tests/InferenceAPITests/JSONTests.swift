import InferenceAPI
import NIOCore
import Testing

@Suite struct JSONTests {
    @Test func parsesNestedDocument() throws {
        let value = try JSONValue.parse(#"{"a": [1, 2.5, "x\n\u00e9\ud83d\ude00", true, null], "b": {"c": -3e2}}"#)
        #expect(value["a"] == .array([.integer(1), .double(2.5), .string("x\né😀"), .bool(true), .null]))
        #expect(value["b"]?["c"] == .double(-300))
    }

    /// Python's json messages and character offsets, as vLLM's 400 for a malformed body shows.
    @Test(arguments: [
        ("", "Expecting value", 0), ("{", "Expecting property name enclosed in double quotes", 1),
        (#"{"a" 1}"#, "Expecting ':' delimiter", 5), ("[1,]", "Expecting value", 3), ("tru", "Expecting value", 0),
        (#""abc"#, "Unterminated string starting at", 0), ("{} x", "Extra data", 3), ("01", "Extra data", 1),
        (#"{"é":1 2}"#, "Expecting ',' delimiter", 7), (#"["\q"]"#, "Invalid \\escape", 2),
    ])
    func rejectsMalformedAsPython(_ text: String, _ reason: String, _ offset: Int) throws {
        let error = try #require(throws: JSONParseError.self) { try JSONValue.parse(text) }
        #expect(error.reason == reason)
        #expect(error.offset == offset)
    }

    @Test func readsWhatPythonReads() throws {
        #expect(try JSONValue.parse("\u{FEFF}[NaN, Infinity, -Infinity]")["x"] == nil)
        guard case .array(let values) = try JSONValue.parse("\u{FEFF}[NaN, Infinity, -Infinity]") else { Issue.record("not an array"); return }
        #expect(values.count == 3)
        #expect(values[1] == .double(.infinity) && values[2] == .double(-.infinity))
        if case .double(let nan) = values[0] { #expect(nan.isNaN) } else { Issue.record("NaN not read") }
        let error = try #require(throws: JSONParseError.self) { try JSONValue.parse(#""\u12""#) }
        #expect(error.reason == "Invalid \\uXXXX escape" && error.offset == 2)
    }

    @Test func keepsKeyOrderAndLoneSurrogates() throws {
        let value = try JSONValue.parse(#"{"z":1,"a":"\ud800","z":2}"#)
        guard case .object(let fields) = value else { Issue.record("not an object"); return }
        #expect(fields.keys == ["z", "a"])
        #expect(fields["z"] == .integer(2))
        #expect(fields["a"] == .string("\u{FFFD}"))
        #expect(APIError.pythonRepr(value) == "{'z': 2, 'a': '\u{FFFD}'}")
        #expect(APIError.pythonRepr(.string("it's")) == #""it's""#)
        #expect(APIError.pythonRepr(.string("tab\there")) == #"'tab\there'"#)
    }

    /// Plain runs are read 16 and 32 bytes at a time: a quote, an escape or a control
    /// character must be found wherever it falls in a step, and past the last whole step.
    @Test func findsEachSpecialByteWhereverItFallsInARun() throws {
        for length in 0..<80 {
            let plain = String((0..<length).map { Character(UnicodeScalar(UInt8(97 + $0 % 26))) })
            #expect(try JSONValue.parse("\"\(plain)\"") == .string(plain))
            #expect(try JSONValue.parse("\"\(plain)\\n\(plain)\"") == .string(plain + "\n" + plain))
            let error = try #require(throws: JSONParseError.self) { try JSONValue.parse("\"\(plain)\u{01}x\"") }
            #expect(error.reason == "Invalid control character at" && error.offset == length + 1)
        }
    }

    @Test func rejectsDeepNesting() {
        let text = String(repeating: "[", count: 1000) + String(repeating: "]", count: 1000)
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

@Suite struct JSONRobustnessTests {
    /// Thousands of corrupted request bodies: each either parses to a document that writes back
    /// and re-parses to itself, or throws JSONParseError — never a crash or a hang.
    @Test func corruptedBodiesParseOrFailCleanly() throws {
        let seed = Array(#"{"model":"m","prompt":["a\u00e9\"b",[1,2,3]],"max_tokens":16,"stream":true,"t":-1.5e3,"x":null,"o":{"k":[{}]}}"#.utf8)
        var state: UInt64 = 0x1234_5678
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let alphabet = Array(#"{}[]",:\u0123456789.eE+-tfn "#.utf8) + [0x00, 0x0A, 0xC3, 0xFF]
        var parsed = 0
        for _ in 0..<5000 {
            var bytes = seed
            for _ in 0..<(1 + Int(next() % 4)) {
                let position = Int(next() % UInt64(bytes.count))
                switch next() % 3 {
                case 0: bytes[position] = alphabet[Int(next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet[Int(next() % UInt64(alphabet.count))], at: position)
                }
            }
            do {
                let value = try JSONValue.parse(ByteBuffer(bytes: bytes))
                var written = ByteBuffer()
                written.writeJSON(value)
                #expect(try JSONValue.parse(written) == value)
                parsed += 1
            } catch {
                // A clean JSONParseError is the expected outcome for most mutations.
            }
        }
        #expect(parsed > 0)
    }

    @Test func aRepeatedKeyKeepsItsFirstPlaceAndTakesTheLastValueAsPythonDoes() throws {
        let small = try JSONValue.parse(#"{"a":1,"b":2,"a":3}"#)
        guard case .object(let fields) = small else { Issue.record("not an object"); return }
        #expect(fields.keys == ["a", "b"])
        #expect(small["a"] == .integer(3))
        // The same past the size where members are indexed by key.
        let keys = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let large = try JSONValue.parse("{" + keys + #","k3":"again","k40":40}"#)
        guard case .object(var many) = large else { Issue.record("not an object"); return }
        #expect(many.count == 41)
        #expect(many.keys.prefix(4) == ["k0", "k1", "k2", "k3"])
        #expect(many["k3"] == .string("again"))
        many["k3"] = nil
        #expect(many.count == 40 && many["k4"] == .integer(4) && many["k40"] == .integer(40))
    }
}

import InferenceAPI
import NIOCore
import Testing

/// The body reader, fed a body in pieces cut anywhere, reads what the full parser would, builds
/// nothing else, and refuses what it refuses.
@Suite struct ScannedBodyStreamTests {
    /// What a reader must read, from the parsed tree.
    static func reference(_ bytes: [UInt8], required: String, chat: Bool) -> Result<ScannedBody?, JSONParseError> {
        let value: JSONValue
        do {
            value = try JSONValue.parse(ByteBuffer(bytes: bytes))
        } catch {
            return .failure(error)
        }
        guard case .object(let object) = value else { return .success(nil) }
        var scanned = ScannedBody()
        if case .string(let model)? = object["model"] { scanned.model = model }
        switch object[required] {
        case nil, .null?, .string("")?, .array([])?: scanned.hasRequired = false
        default: scanned.hasRequired = true
        }
        if chat {
            scanned.text = object["messages"]?.jsonText() ?? ""
        } else {
            switch object["prompt"] {
            case .string(let text)?: scanned.text = text
            case .array(let items)?: scanned.text = items.compactMap { if case .string(let text) = $0 { text } else { nil } }.joined()
            default: break
            }
        }
        return .success(scanned)
    }

    /// The reference with the text kept as a reader keeps it: the characters that begin
    /// before `limit` bytes.
    static func expected(_ bytes: [UInt8], required: String, chat: Bool, limit: Int = 1 << 30) -> ScannedBodyStream.Outcome {
        switch reference(bytes, required: required, chat: chat) {
        case .failure: return .malformed
        case .success(nil): return .notAnObject
        case .success(var body?):
            var text = "", offset = 0
            for scalar in body.text.unicodeScalars {
                guard offset < limit else { break }
                text.unicodeScalars.append(scalar)
                offset += scalar.utf8.count
            }
            body.text = text
            return .scanned(body)
        }
    }

    /// The reader fed `bytes` in pieces cut at `cuts` (none: whole).
    static func streamed(_ bytes: [UInt8], cuts: [Int] = [], required: String, chat: Bool, limit: Int = 1 << 30) -> ScannedBodyStream.Outcome {
        var stream = ScannedBodyStream(required: required, textMember: required, form: chat ? .compactJSON : .prompt, limit: limit)
        var start = 0
        for cut in cuts.sorted() + [bytes.count] where cut >= start {
            stream.feed(ByteBuffer(bytes: bytes[start..<cut]))
            start = cut
        }
        return stream.finish()
    }

    static let completions = [
        #"{"model":"m","prompt":"Hello\nthere \"you\" \u00e9\ud83d\ude00 \/ \\ end","max_tokens":16}"#,
        #"{"model": "a", "prompt": ["one ", 7, "two", ["x"], null], "model": "b"}"#,
        #"{"model": 5, "prompt": "x"}"#, #"{"prompt": ""}"#, #"{"prompt": null, "model": "m"}"#, #"{"prompt": [ ] }"#,
        #"{"model":"m"}"#, #"  {"prompt":"lone \ud800 surrogate","n":-0,"t":1.5e-3,"s":true,"o":{"k":[{},[]]}}  "#,
        #"[1,2]"#, #""text""#, #"{}"#, "\u{FEFF}{\"prompt\":\"bom\"}",
        // Refused: each must fail as the parser fails, with its words and offset.
        #"{"prompt":"x""#, #"{"prompt":"x"} extra"#, #"{"prompt":"\q"}"#, "{\"prompt\":\"a\u{01}b\"}", #"{"prompt":"\u12G4"}"#,
        #"{prompt:1}"#, #"{"a" 1}"#, #"{"a":1,}"#, #"{"a":[1,]}"#, #"{"a":01}"#, #""#, #"{"a":tru}"#, #"{"a":NaN,"b":-Infinity}"#,
        String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
    ]

    static let chats = [
        #"{"model":"m","messages":[{"role":"user","content":"Hi \"there\"\n\t\u0001 \u00e9 \/"},{"role":"assistant","content":null,"n":[1,1.0,1e2,-0,2.5E-1,12345678901234567890]}]}"#,
        #"{"messages":"not an array","model":"m"}"#, #"{"messages":[]}"#, #"{"messages":{"a":true,"b":false}}"#,
        #"{"messages":[{"content":"x"}],"messages":[{"content":"last"}]}"#,
    ]

    /// Whole, cut once at every offset, and byte by byte: cuts fall inside strings, escapes,
    /// `\u` sequences, surrogate pairs, characters, numbers, literals and the byte-order mark.
    @Test func readsWhatParsingReadsWhereverThePiecesAreCut() {
        let bodies = Self.completions.map { ($0, "prompt", false) } + (Self.chats + Self.completions).map { ($0, "messages", true) }
        for (body, required, chat) in bodies {
            let bytes = Array(body.utf8)
            let expected = Self.expected(bytes, required: required, chat: chat)
            #expect(Self.streamed(bytes, required: required, chat: chat) == expected, "whole: \(body)")
            for cut in 0...bytes.count {
                let outcome = Self.streamed(bytes, cuts: [cut], required: required, chat: chat)
                guard outcome == expected else {
                    Issue.record("cut at \(cut) of \(body): \(outcome), expected \(expected)")
                    break
                }
            }
            #expect(Self.streamed(bytes, cuts: Array(0..<bytes.count), required: required, chat: chat) == expected, "byte by byte: \(body)")
        }
    }

    /// The text is kept to the limit, ending on a whole character, even when a piece ends inside
    /// the character the limit cuts.
    @Test func theTextStopsAtTheLimitOnAWholeCharacter() throws {
        let text = String(repeating: "ab\u{e9}\u{1F600}\\n", count: 400)
        let body = Array(#"{"model":"m","prompt":"\#(text)","max_tokens":16}"#.utf8)
        guard case .scanned(let full) = Self.expected(body, required: "prompt", chat: false) else { Issue.record("not read"); return }
        for limit in [0, 1, 2, 3, 4, 5, 7, 64, 1000, 1001, 1002, 1003] {
            for step in [1, 3, 7, body.count] {
                let outcome = Self.streamed(body, cuts: Array(stride(from: 0, to: body.count, by: step)), required: "prompt", chat: false, limit: limit)
                guard case .scanned(let scanned) = outcome else { Issue.record("limit \(limit): \(outcome)"); continue }
                #expect(full.text.utf8.starts(with: scanned.text.utf8), "limit \(limit), pieces of \(step)")
                #expect(scanned.text.utf8.count >= limit && scanned.text.utf8.count < limit + 4, "limit \(limit): \(scanned.text.utf8.count) bytes")
                #expect(!scanned.text.unicodeScalars.contains("\u{FFFD}"), "no character cut in half at \(limit), pieces of \(step)")
            }
        }
        let chat = Array(#"{"messages":[{"role":"user","content":"\#(text)"}]}"#.utf8)
        #expect(Self.streamed(chat, cuts: [100, 501, 502], required: "messages", chat: true, limit: 500)
            == Self.expected(chat, required: "messages", chat: true, limit: 500))
    }

    /// Thousands of corrupted bodies in random pieces: the reader accepts exactly what the
    /// parser accepts and reads the same fields.
    @Test func corruptedBodiesInRandomPiecesAreJudgedAsTheParserJudgesThem() {
        let seeds = [
            Array(#"{"model":"m","prompt":["a\u00e9\"b\ud83d\ude00",[1,2,3]],"max_tokens":16,"stream":true,"t":-1.5e3,"x":null,"o":{"k":[{}]}}"#.utf8),
            Array(#"{"model":"m","messages":[{"role":"user","content":"a\u00e9\"b\n\ud800x"},{"n":[1,2.5,-0,1E2]}],"t":true}"#.utf8),
            Array("\u{FEFF}{\"model\":\"\\u006d\",\"prompt\":\"caf\u{e9} \\/\\\\\",\"n\":[null,false,NaN,-Infinity]}".utf8),
        ]
        var state: UInt64 = 0x9E37_79B9
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let alphabet = Array(#"{}[]",:\u0123456789.eE+-tfnNI "#.utf8) + [0x00, 0x0A, 0xC3, 0xEF, 0xFF]
        var accepted = 0
        for round in 0..<6000 {
            let chat = round % 3 == 1
            var bytes = seeds[round % 3]
            for _ in 0..<Int(next() % 4) {
                let position = Int(next() % UInt64(bytes.count))
                switch next() % 3 {
                case 0: bytes[position] = alphabet[Int(next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet[Int(next() % UInt64(alphabet.count))], at: position)
                }
            }
            let required = chat ? "messages" : "prompt"
            // A limit counts the body's bytes, the reference's the parsed text's, where each
            // invalid UTF-8 byte became U+FFFD: limits only for valid UTF-8.
            let limit = round % 5 == 0 && String(validating: bytes, as: UTF8.self) != nil ? Int(next() % 12) : 1 << 30
            let expected = Self.expected(bytes, required: required, chat: chat, limit: limit)
            // Repeated members inside messages are written once by the tree, each time by the reader.
            if chat, case .scanned = expected, String(decoding: bytes, as: UTF8.self).components(separatedBy: "\"role\"").count > 2 {
                continue
            }
            let cuts = (0..<Int(next() % 5)).map { _ in Int(next() % UInt64(bytes.count + 1)) }
            let outcome = Self.streamed(bytes, cuts: cuts, required: required, chat: chat, limit: limit)
            guard outcome == expected else {
                Issue.record("cuts \(cuts.sorted()) of \(String(decoding: bytes, as: UTF8.self)): \(outcome), expected \(expected)")
                return
            }
            if case .scanned = expected { accepted += 1 }
        }
        #expect(accepted > 1000)
    }

    /// The parser's depth limit: 512 nested containers are read, 513 refused.
    @Test func nestingPastTheParsersDepthIsRefused() {
        for depth in [512, 513] {
            let nested = Array((String(repeating: "[", count: depth) + String(repeating: "]", count: depth)).utf8)
            #expect(Self.streamed(nested, cuts: [depth], required: "prompt", chat: false) == (depth > 512 ? .malformed : .notAnObject))
            #expect(Self.expected(nested, required: "prompt", chat: false) == (depth > 512 ? .malformed : .notAnObject))
        }
    }
}

import InferenceAPI
import NIOCore
import Testing

/// The scanner reads what the full parser would, builds nothing else, and refuses what it refuses.
@Suite struct JSONScannerTests {
    /// What `ScannedBody.scan` must give, from the parsed tree (the gateway's reading before).
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

    static func scan(_ bytes: [UInt8], required: String, chat: Bool, limit: Int = 1 << 30) -> Result<ScannedBody?, JSONParseError> {
        Result { () throws(JSONParseError) in
            try ScannedBody.scan(
                ByteBuffer(bytes: bytes), required: required, textMember: required, form: chat ? .compactJSON : .prompt, limit: limit)
        }
    }

    static func same(_ lhs: Result<ScannedBody?, JSONParseError>, _ rhs: Result<ScannedBody?, JSONParseError>) -> Bool {
        switch (lhs, rhs) {
        case (.success(let a), .success(let b)): a == b
        case (.failure(let a), .failure(let b)): a.description == b.description
        default: false
        }
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

    @Test func scanningReadsWhatParsingReads() {
        for body in Self.completions {
            let bytes = Array(body.utf8)
            #expect(Self.same(Self.scan(bytes, required: "prompt", chat: false), Self.reference(bytes, required: "prompt", chat: false)), "\(body)")
        }
        for body in Self.chats + Self.completions {
            let bytes = Array(body.utf8)
            #expect(Self.same(Self.scan(bytes, required: "messages", chat: true), Self.reference(bytes, required: "messages", chat: true)), "\(body)")
        }
    }

    /// The text is kept to the limit, ending on a whole character, and is the full text's start.
    @Test func theTextStopsAtTheLimitOnAWholeCharacter() throws {
        let text = String(repeating: "ab\u{e9}\u{1F600}\\n", count: 400)
        let body = Array(#"{"model":"m","prompt":"\#(text)"}"#.utf8)
        let full = try #require(try Self.reference(body, required: "prompt", chat: false).get()).text
        for limit in [0, 1, 2, 3, 4, 5, 7, 64, 1000, 1001, 1002, 1003] {
            let scanned = try #require(try Self.scan(body, required: "prompt", chat: false, limit: limit).get())
            #expect(full.utf8.starts(with: scanned.text.utf8), "limit \(limit)")
            #expect(scanned.text.utf8.count >= limit && scanned.text.utf8.count < limit + 4, "limit \(limit): \(scanned.text.utf8.count) bytes")
            #expect(!scanned.text.unicodeScalars.contains("\u{FFFD}"), "no character cut in half at \(limit)")
        }
        let chat = Array(#"{"messages":[{"role":"user","content":"\#(text)"}]}"#.utf8)
        let compact = try #require(try Self.reference(chat, required: "messages", chat: true).get()).text
        let scanned = try #require(try Self.scan(chat, required: "messages", chat: true, limit: 500).get())
        #expect(compact.utf8.starts(with: scanned.text.utf8) && scanned.text.utf8.count >= 500)
    }

    /// Thousands of corrupted bodies: the scanner accepts exactly what the parser accepts, with
    /// the same error, and reads the same fields.
    @Test func corruptedBodiesAreJudgedAsTheParserJudgesThem() {
        let seeds = [
            Array(#"{"model":"m","prompt":["a\u00e9\"b",[1,2,3]],"max_tokens":16,"stream":true,"t":-1.5e3,"x":null,"o":{"k":[{}]}}"#.utf8),
            Array(#"{"model":"m","messages":[{"role":"user","content":"a\u00e9\"b\n"},{"n":[1,2.5]}],"t":-1.5e3}"#.utf8),
        ]
        var state: UInt64 = 0x9E37_79B9
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        let alphabet = Array(#"{}[]",:\u0123456789.eE+-tfn "#.utf8) + [0x00, 0x0A, 0xC3, 0xFF]
        var accepted = 0
        for round in 0..<6000 {
            let chat = round % 2 == 1
            var bytes = seeds[round % 2]
            for _ in 0..<(1 + Int(next() % 4)) {
                let position = Int(next() % UInt64(bytes.count))
                switch next() % 3 {
                case 0: bytes[position] = alphabet[Int(next() % UInt64(alphabet.count))]
                case 1: bytes.remove(at: position)
                default: bytes.insert(alphabet[Int(next() % UInt64(alphabet.count))], at: position)
                }
            }
            let required = chat ? "messages" : "prompt"
            let reference = Self.reference(bytes, required: required, chat: chat)
            // Repeated members inside messages are written once by the tree, each time by the scanner.
            if chat, case .success(let body?) = reference, body.text.contains("\"role\":"), String(decoding: bytes, as: UTF8.self).components(separatedBy: "\"role\"").count > 2 {
                continue
            }
            #expect(Self.same(Self.scan(bytes, required: required, chat: chat), reference), "\(String(decoding: bytes, as: UTF8.self))")
            if case .success = reference { accepted += 1 }
        }
        #expect(accepted > 100)
    }
}

import Foundation
import Testing
@testable import InferenceAPI

/// Small tokenizer.json files of both kinds, built here, with ids worked out by hand (and
/// checked against Python's `tokenizers` on the same files while this was written).
@Suite struct HuggingFaceTokenizerTests {
    // MARK: Byte-level BPE, Llama 3 style

    /// Ids 0–255 are the bytes, spelt with GPT-2's table (so id 32 is "Ġ", the space), then:
    /// 256 he, 257 ll, 258 hell, 259 hello, 260 Ġhello, 261 wo, 262 rl, 263 worl, 264 world,
    /// 265 Ġworld, 266 xyz (no merge makes it); added: 267 <|begin_of_text|>, 268 <|end_of_text|>,
    /// 269 <|eot_id|>, 270 <mask> (takes the spaces around it).
    static func byteLevelFile(mergesAsPairs: Bool = false, ignoreMerges: Bool = true) -> Data {
        var vocab: [String: Int] = [:]
        for byte in 0..<256 { vocab[gpt2Character(UInt8(byte))] = byte }
        let merged = ["he", "ll", "hell", "hello", "Ġhello", "wo", "rl", "worl", "world", "Ġworld", "xyz"]
        for (offset, token) in merged.enumerated() { vocab[token] = 256 + offset }
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ hello", "w o", "r l", "wo rl", "worl d", "Ġ world"]
        let special = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
        var added: [[String: Any]] = special.enumerated().map { offset, content in
            ["id": 267 + offset, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true]
        }
        added.append(["id": 270, "content": "<mask>", "single_word": false, "lstrip": true, "rstrip": true, "normalized": false, "special": true])
        let llama3Split = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let file: [String: Any] = [
            "version": "1.0",
            "added_tokens": added,
            "normalizer": NSNull(),
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": llama3Split], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ]],
            "post_processor": ["type": "Sequence", "processors": [
                ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true],
                ["type": "TemplateProcessing",
                 "single": [["SpecialToken": ["id": "<|begin_of_text|>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                 "pair": [["SpecialToken": ["id": "<|begin_of_text|>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                          ["SpecialToken": ["id": "<|begin_of_text|>", "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                 "special_tokens": ["<|begin_of_text|>": ["id": "<|begin_of_text|>", "ids": [267], "tokens": ["<|begin_of_text|>"]]]],
            ]],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
                "vocab": vocab,
                "merges": mergesAsPairs ? merges.map { $0.split(separator: " ").map(String.init) } as [Any] : merges as [Any],
            ] as [String: Any],
        ]
        return json(file)
    }

    /// GPT-2's byte-to-character table, written out independently of the code under test:
    /// printable Latin-1 bytes are themselves, the rest take U+0100 onwards in byte order.
    static func gpt2Character(_ byte: UInt8) -> String {
        let printable: (UInt8) -> Bool = { (0x21...0x7E).contains($0) || (0xA1...0xAC).contains($0) || (0xAE...0xFF).contains($0) }
        if printable(byte) { return String(UnicodeScalar(byte)) }
        let rank = (0..<byte).filter { !printable($0) }.count
        return String(Character(Unicode.Scalar(UInt32(256 + rank)) ?? "?"))
    }

    static func json(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
    }

    @Test func byteLevelIDsWorkedOutByHand() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.byteLevelFile())
        // The Split regex makes "hello" and " world" (the space joins the letters after it); the
        // merges in rank order build 259 "hello" and, from "Ġ" (32) + "world", 265 "Ġworld".
        #expect(tokenizer.encode("hello world", addSpecialTokens: false) == [259, 265])
        // "H" has no merge with "e", so only "l l" (rank 1) applies: H e ll o.
        #expect(tokenizer.encode("Hello", addSpecialTokens: false) == [72, 101, 257, 111])
        // é is the bytes C3 A9, and each byte is its own token.
        #expect(tokenizer.encode("café", addSpecialTokens: false) == [99, 97, 102, 0xC3, 0xA9])
        // ignore_merges: a pre-token that is a token is taken whole though no merge makes "xyz".
        #expect(tokenizer.encode("xyz", addSpecialTokens: false) == [266])
        let withoutIgnore = try HuggingFaceTokenizer(json: Self.byteLevelFile(ignoreMerges: false))
        #expect(withoutIgnore.encode("xyz", addSpecialTokens: false) == [120, 121, 122])
        // Two newlines stay one pre-token (\s*[\r\n]+) but have no merge: Ċ Ċ.
        #expect(tokenizer.encode("\n\n", addSpecialTokens: false) == [10, 10])
    }

    @Test func byteLevelBOSOnlyWithSpecialTokens() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.byteLevelFile())
        #expect(tokenizer.addsBOS)
        #expect(tokenizer.bosTokenID == 267)
        #expect(tokenizer.eosTokenID == 268)
        #expect(tokenizer.encode("hello world", addSpecialTokens: true) == [267, 259, 265])
        #expect(tokenizer.encode("hello world", addSpecialTokens: false) == [259, 265])
        #expect(tokenizer.encode("", addSpecialTokens: true) == [267])
        #expect(tokenizer.encode("", addSpecialTokens: false) == [])
    }

    @Test func byteLevelAddedTokensInText() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.byteLevelFile())
        // Added tokens are cut out before the regex runs, so " world" after one is still 265.
        #expect(tokenizer.encode("hello<|eot_id|> world", addSpecialTokens: false) == [259, 269, 265])
        #expect(tokenizer.encode("<|begin_of_text|>hello", addSpecialTokens: true) == [267, 267, 259])
        // <mask> has lstrip and rstrip: the spaces on both sides go with it.
        #expect(tokenizer.encode("hello  <mask>  world", addSpecialTokens: false) == [259, 270, 264])
        // Decoding skips special tokens unless asked not to.
        #expect(tokenizer.decode([267, 259, 269, 265]) == "hello world")
        #expect(tokenizer.decode([267, 259, 269, 265], skipSpecialTokens: false) == "<|begin_of_text|>hello<|eot_id|> world")
    }

    @Test(arguments: [
        "hello world", "Hello, World!", "  two leading spaces", "trailing   ", "a\nb\n\nc\r\n", "multiple     spaces\tand tabs",
        "café naïve Zürich", "日本語", "emoji 😀👍🏽 and 👨‍👩‍👧", "", " ", "\n", "it's 12345 o'clock", "<mask>",
    ])
    func byteLevelRoundTrips(_ text: String) throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.byteLevelFile())
        let ids = tokenizer.encode(text, addSpecialTokens: true)
        if text != "<mask>" { #expect(tokenizer.decode(ids) == text) }
        // Streaming token by token gives the same text.
        let streamed = ids.flatMap { tokenizer.bytes(of: $0) }
        #expect(String(decoding: streamed, as: UTF8.self) == tokenizer.decode(ids))
    }

    @Test func mergesAsStringsOrPairsGiveTheSameIDs() throws {
        let lines = try HuggingFaceTokenizer(json: Self.byteLevelFile(mergesAsPairs: false))
        let pairs = try HuggingFaceTokenizer(json: Self.byteLevelFile(mergesAsPairs: true))
        for text in ["hello world", "Hello world, hello worlds", "well hello there", "worldwide hell"] {
            #expect(lines.encode(text, addSpecialTokens: true) == pairs.encode(text, addSpecialTokens: true))
        }
        #expect(pairs.encode(" hello", addSpecialTokens: false) == [260])
    }

    @Test func byteLevelTokenStringsAndBytes() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.byteLevelFile())
        #expect(tokenizer.vocabularySize == 271)
        #expect(tokenizer.tokenString(260) == "Ġhello")
        #expect(tokenizer.tokenString(10) == "Ċ")
        #expect(tokenizer.tokenString(269) == "<|eot_id|>")
        #expect(tokenizer.tokenString(271) == "" && tokenizer.tokenString(-1) == "")
        #expect(tokenizer.bytes(of: 260) == Array(" hello".utf8))
        #expect(tokenizer.bytes(of: 0xC3) == [0xC3])
        #expect(tokenizer.bytes(of: 267) == [])
        #expect(tokenizer.bytes(of: 9999) == [])
        // Only "Ġ" plus two or more letters: Ġhello and Ġworld.
        #expect(tokenizer.textTokenIDs == [260, 265])
        #expect(tokenizer.decode([-5, 260, 100_000]) == " hello")
    }

    // MARK: SentencePiece-style BPE, Llama 2 style

    /// 0 <unk>, 1 <s>, 2 </s>, 3–258 the byte tokens <0x00>…<0xFF> (byte b is id 3 + b), then
    /// 259 ▁, 260 h, 261 e, 262 l, 263 o, 264 w, 265 r, 266 d, 267 a, 268 c, 269 f, and the merges'
    /// tokens 270 ▁h, 271 ll, 272 ▁he, 273 ▁hell, 274 ▁hello, 275 ▁w, 276 or, 277 ▁wor, 278 ▁worl,
    /// 279 ▁world. No "é", "x" or newline: those fall back to bytes.
    static func sentencePieceFile(metaspace: Bool = false, byteFallback: Bool = true) -> Data {
        var vocab: [String: Int] = ["<unk>": 0, "<s>": 1, "</s>": 2]
        for byte in 0..<256 { vocab[String(format: "<0x%02X>", byte)] = 3 + byte }
        let pieces = ["▁", "h", "e", "l", "o", "w", "r", "d", "a", "c", "f",
                      "▁h", "ll", "▁he", "▁hell", "▁hello", "▁w", "or", "▁wor", "▁worl", "▁world"]
        for (offset, piece) in pieces.enumerated() { vocab[piece] = 259 + offset }
        let merges = ["▁ h", "l l", "▁h e", "▁he ll", "▁hell o", "▁ w", "o r", "▁w or", "▁wor l", "▁worl d"]
        let added: [[String: Any]] = ["<unk>", "<s>", "</s>"].enumerated().map { id, content in
            ["id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true]
        }
        let legacy: [String: Any] = ["type": "Sequence", "normalizers": [
            ["type": "Prepend", "prepend": "▁"],
            ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
        ]]
        let file: [String: Any] = [
            "version": "1.0",
            "added_tokens": added,
            "normalizer": metaspace ? NSNull() : legacy,
            "pre_tokenizer": metaspace ? ["type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false] as Any : NSNull(),
            "post_processor": [
                "type": "TemplateProcessing",
                "single": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                "pair": [["SpecialToken": ["id": "<s>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                         ["SpecialToken": ["id": "<s>", "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                "special_tokens": ["<s>": ["id": "<s>", "ids": [1], "tokens": ["<s>"]]],
            ],
            "decoder": ["type": "Sequence", "decoders": [
                ["type": "Replace", "pattern": ["String": "▁"], "content": " "],
                ["type": "ByteFallback"],
                ["type": "Fuse"],
                ["type": "Strip", "content": " ", "start": 1, "stop": 0],
            ]],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": "<unk>", "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": true, "byte_fallback": byteFallback, "ignore_merges": false,
                "vocab": vocab, "merges": merges,
            ] as [String: Any],
        ]
        return json(file)
    }

    @Test func sentencePieceIDsWorkedOutByHand() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.sentencePieceFile())
        // Normalized to "▁hello▁world", one piece: ▁ h e l l o ▁ w o r l d. Merges by rank:
        // ▁h, ll, ▁he, ▁hell, ▁hello (the first o is used up), ▁w, or, ▁wor, ▁worl, ▁world.
        #expect(tokenizer.encode("hello world", addSpecialTokens: false) == [274, 279])
        #expect(tokenizer.encode("hello world", addSpecialTokens: true) == [1, 274, 279])
        #expect(tokenizer.addsBOS && tokenizer.bosTokenID == 1 && tokenizer.eosTokenID == 2)
        // "é" is not in the vocabulary: byte fallback gives <0xC3> <0xA9>, ids 3 + 0xC3 and 3 + 0xA9.
        #expect(tokenizer.encode("café", addSpecialTokens: false) == [259, 268, 267, 269, 3 + 0xC3, 3 + 0xA9])
        // A newline falls back to <0x0A>.
        #expect(tokenizer.encode("a\nb", addSpecialTokens: false) == [259, 267, 3 + 0x0A, 3 + 0x62])
        // Added tokens in the text; each stretch of text around them gets its own "▁".
        #expect(tokenizer.encode("hello</s>world", addSpecialTokens: false) == [274, 2, 279])
    }

    @Test func sentencePieceUnknownWithoutByteFallback() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.sentencePieceFile(byteFallback: false))
        // "é" and "ü" are unknown; fuse_unk makes the run of two one <unk>, and ▁ h merge to ▁h.
        #expect(tokenizer.encode("héü", addSpecialTokens: false) == [270, 0])
    }

    @Test func metaspacePreTokenizerGivesTheSameIDs() throws {
        let legacy = try HuggingFaceTokenizer(json: Self.sentencePieceFile())
        let metaspace = try HuggingFaceTokenizer(json: Self.sentencePieceFile(metaspace: true))
        for text in ["hello world", "café world", "hello  world\nhello"] {
            #expect(metaspace.encode(text, addSpecialTokens: true) == legacy.encode(text, addSpecialTokens: true))
        }
    }

    @Test(arguments: [
        "hello world", "Hello World", "  leading spaces", "trailing  ", "a\nb\n\nc", "multiple     spaces\tand a tab",
        "café naïve Zürich", "日本語", "emoji 😀👍🏽 and 👨‍👩‍👧", "", " ", "x",
    ])
    func sentencePieceRoundTrips(_ text: String) throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.sentencePieceFile())
        let ids = tokenizer.encode(text, addSpecialTokens: true)
        #expect(tokenizer.decode(ids) == text)
    }

    @Test func sentencePieceTokenStringsAndBytes() throws {
        let tokenizer = try HuggingFaceTokenizer(json: Self.sentencePieceFile())
        #expect(tokenizer.vocabularySize == 280)
        #expect(tokenizer.tokenString(274) == "▁hello")
        #expect(tokenizer.tokenString(3 + 0x0A) == "<0x0A>")
        #expect(tokenizer.bytes(of: 274) == Array(" hello".utf8))  // a later token's space is kept
        #expect(tokenizer.bytes(of: 3 + 0xC3) == [0xC3])
        #expect(tokenizer.bytes(of: 1) == [])
        // ▁ plus two or more letters: ▁he, ▁hell, ▁hello, ▁wor, ▁worl, ▁world.
        #expect(tokenizer.textTokenIDs == [272, 273, 274, 277, 278, 279])
        #expect(tokenizer.decode([274, 279]) == "hello world")
    }

    // MARK: Files that can't be used

    static func modifiedByteLevelFile(_ change: (inout [String: Any]) -> Void) -> Data {
        var file = (try? JSONSerialization.jsonObject(with: byteLevelFile())) as? [String: Any] ?? [:]
        change(&file)
        return json(file)
    }

    static func modifiedModel(_ change: @escaping (inout [String: Any]) -> Void) -> Data {
        modifiedByteLevelFile { file in
            var model = file["model"] as? [String: Any] ?? [:]
            change(&model)
            file["model"] = model
        }
    }

    @Test(arguments: [
        (modifiedModel { $0["type"] = "Unigram" }, #"model.type "Unigram" is not supported (supported: BPE)"#),
        (modifiedModel { $0["type"] = "WordPiece" }, #"model.type "WordPiece" is not supported"#),
        (modifiedByteLevelFile { $0["normalizer"] = ["type": "BertNormalizer"] }, #"normalizer.type "BertNormalizer" is not supported"#),
        (modifiedByteLevelFile { $0["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [["type": "Punctuation"]]] },
         #"pre_tokenizer.pretokenizers[0].type "Punctuation" is not supported"#),
        (modifiedByteLevelFile { $0["decoder"] = ["type": "WordPiece"] }, #"decoder.type "WordPiece" is not supported"#),
        (modifiedModel { $0["vocab"] = ["a": -1] }, #"model.vocab["a"] is -1, not a token id"#),
        (modifiedModel { $0["vocab"] = ["a": 20_000_000] }, #"model.vocab["a"] is 20000000, not a token id"#),
        (modifiedModel { $0["vocab"] = ["a": 1.5] }, #"model.vocab["a"] is 1.5, not a token id"#),
        (modifiedModel { $0["merges"] = ["h q"] }, #"model.merges[0] "h q" uses a token missing from model.vocab"#),
        (modifiedModel { $0["merges"] = ["h e l"] }, #"model.merges[0] "h e l" is not two tokens"#),
        (modifiedModel { $0["merges"] = nil }, "model.merges is missing"),
        (modifiedModel { $0["continuing_subword_prefix"] = "##" }, "model.continuing_subword_prefix is not supported"),
        (modifiedByteLevelFile { $0["model"] = nil }, "model is missing"),
        (modifiedByteLevelFile {
            $0["pre_tokenizer"] = ["type": "Split", "pattern": ["Regex": "(unclosed"], "behavior": "Isolated", "invert": false]
        },
         #"pre_tokenizer.pattern.Regex "(unclosed" is not a regular expression"#),
        (modifiedByteLevelFile {
            $0["post_processor"] = [
                "type": "TemplateProcessing", "single": [["SpecialToken": ["id": "<x>", "type_id": 0]]], "special_tokens": [String: Any](),
            ]
        },
         #"post_processor.special_tokens["<x>"] is missing"#),
        (Data("{not json".utf8), "is not valid JSON"),
        (Data("[1, 2]".utf8), "is not a JSON object"),
    ])
    func refusesWithAMessageNamingTheProblem(_ file: Data, _ message: String) throws {
        let error = try #require(throws: TokenizerFileError.self) { try HuggingFaceTokenizer(json: file) }
        #expect(error.description.hasPrefix("tokenizer.json: "))
        #expect(error.problem.contains(message), "\(error.problem)")
    }

    @Test func errorsNameTheFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hf-tokenizer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("tokenizer.json")
        try Self.modifiedModel { $0["type"] = "Unigram" }.write(to: url)
        let error = try #require(throws: TokenizerFileError.self) { try HuggingFaceTokenizer(contentsOf: url) }
        #expect(error.file == url.path)
        #expect(error.description == "\(url.path): model.type \"Unigram\" is not supported (supported: BPE)")

        try Self.byteLevelFile().write(to: url)
        #expect(try HuggingFaceTokenizer(contentsOf: url).encode("hello", addSpecialTokens: false) == [259])
        #expect(throws: TokenizerFileError.self) { try HuggingFaceTokenizer(contentsOf: directory.appendingPathComponent("absent.json")) }
    }

    // MARK: No input traps

    @Test func oddAndLargeInputs() throws {
        let byteLevel = try HuggingFaceTokenizer(json: Self.byteLevelFile())
        let sentencePiece = try HuggingFaceTokenizer(json: Self.sentencePieceFile())
        let loneSurrogate = String(decoding: [0xD800, 0x61, 0xDFFF] as [UInt16], as: UTF16.self)
        let long = String(repeating: "hello", count: 20_000)  // one 100 KB pre-token
        for text in [loneSurrogate, "\u{0}", "\u{FFFD}\u{10FFFF}", "\u{301}\u{301}", String(repeating: "😀", count: 5000), long] {
            for tokenizer in [byteLevel, sentencePiece] {
                let ids = tokenizer.encode(text, addSpecialTokens: true)
                #expect(tokenizer.decode(ids) == text)
            }
        }
        #expect(byteLevel.encode(long, addSpecialTokens: false).count == 20_000)
        #expect(sentencePiece.encode(long, addSpecialTokens: false).first == 274)
    }
}

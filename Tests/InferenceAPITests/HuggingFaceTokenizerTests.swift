import Foundation
import TestSupport
import Testing
@testable import InferenceAPI

/// Small tokenizer.json files of both kinds, built here, with ids worked out by hand (and
/// checked against Python's `tokenizers` on the same files while this was written).
@Suite struct HuggingFaceTokenizerTests {
    // MARK: Byte-level BPE, Llama 3 style

    @Test func byteLevelIDsWorkedOutByHand() throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile())
        // The Split regex makes "hello" and " world" (the space joins the letters after it); the
        // merges in rank order build 259 "hello" and, from "Ġ" (32) + "world", 265 "Ġworld".
        #expect(tokenizer.encode("hello world", addSpecialTokens: false) == [259, 265])
        // "H" has no merge with "e", so only "l l" (rank 1) applies: H e ll o.
        #expect(tokenizer.encode("Hello", addSpecialTokens: false) == [72, 101, 257, 111])
        // é is the bytes C3 A9, and each byte is its own token.
        #expect(tokenizer.encode("café", addSpecialTokens: false) == [99, 97, 102, 0xC3, 0xA9])
        // ignore_merges: a pre-token that is a token is taken whole though no merge makes "xyz".
        #expect(tokenizer.encode("xyz", addSpecialTokens: false) == [266])
        let withoutIgnore = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile(ignoreMerges: false))
        #expect(withoutIgnore.encode("xyz", addSpecialTokens: false) == [120, 121, 122])
        // Two newlines stay one pre-token (\s*[\r\n]+) but have no merge: Ċ Ċ.
        #expect(tokenizer.encode("\n\n", addSpecialTokens: false) == [10, 10])
    }

    @Test func byteLevelBOSOnlyWithSpecialTokens() throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile())
        #expect(tokenizer.addsBOS)
        #expect(tokenizer.bosTokenID == 267)
        #expect(tokenizer.eosTokenID == 268)
        #expect(tokenizer.encode("hello world", addSpecialTokens: true) == [267, 259, 265])
        #expect(tokenizer.encode("hello world", addSpecialTokens: false) == [259, 265])
        #expect(tokenizer.encode("", addSpecialTokens: true) == [267])
        #expect(tokenizer.encode("", addSpecialTokens: false) == [])
    }

    @Test func byteLevelAddedTokensInText() throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile())
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
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile())
        let ids = tokenizer.encode(text, addSpecialTokens: true)
        if text != "<mask>" { #expect(tokenizer.decode(ids) == text) }
        // Streaming token by token gives the same text.
        let streamed = ids.flatMap { tokenizer.bytes(of: $0) }
        #expect(String(decoding: streamed, as: UTF8.self) == tokenizer.decode(ids))
    }

    @Test func mergesAsStringsOrPairsGiveTheSameIDs() throws {
        let lines = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile(mergesAsPairs: false))
        let pairs = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile(mergesAsPairs: true))
        for text in ["hello world", "Hello world, hello worlds", "well hello there", "worldwide hell"] {
            #expect(lines.encode(text, addSpecialTokens: true) == pairs.encode(text, addSpecialTokens: true))
        }
        #expect(pairs.encode(" hello", addSpecialTokens: false) == [260])
    }

    @Test func byteLevelTokenStringsAndBytes() throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile())
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

    @Test func sentencePieceIDsWorkedOutByHand() throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile())
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
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile(byteFallback: false))
        // "é" and "ü" are unknown; fuse_unk makes the run of two one <unk>, and ▁ h merge to ▁h.
        #expect(tokenizer.encode("héü", addSpecialTokens: false) == [270, 0])
    }

    @Test func metaspacePreTokenizerGivesTheSameIDs() throws {
        let legacy = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile())
        let metaspace = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile(metaspace: true))
        for text in ["hello world", "café world", "hello  world\nhello"] {
            #expect(metaspace.encode(text, addSpecialTokens: true) == legacy.encode(text, addSpecialTokens: true))
        }
    }

    @Test(arguments: [
        "hello world", "Hello World", "  leading spaces", "trailing  ", "a\nb\n\nc", "multiple     spaces\tand a tab",
        "café naïve Zürich", "日本語", "emoji 😀👍🏽 and 👨‍👩‍👧", "", " ", "x",
    ])
    func sentencePieceRoundTrips(_ text: String) throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile())
        let ids = tokenizer.encode(text, addSpecialTokens: true)
        #expect(tokenizer.decode(ids) == text)
    }

    @Test func sentencePieceTokenStringsAndBytes() throws {
        let tokenizer = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile())
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
        var file = (try? JSONSerialization.jsonObject(with: TokenizerFixtures.byteLevelFile())) as? [String: Any] ?? [:]
        change(&file)
        return TokenizerFixtures.json(file)
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

        try TokenizerFixtures.byteLevelFile().write(to: url)
        #expect(try HuggingFaceTokenizer(contentsOf: url).encode("hello", addSpecialTokens: false) == [259])
        #expect(throws: TokenizerFileError.self) { try HuggingFaceTokenizer(contentsOf: directory.appendingPathComponent("absent.json")) }
    }

    // MARK: No input traps

    @Test func oddAndLargeInputs() throws {
        let byteLevel = try HuggingFaceTokenizer(json: TokenizerFixtures.byteLevelFile())
        let sentencePiece = try HuggingFaceTokenizer(json: TokenizerFixtures.sentencePieceFile())
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

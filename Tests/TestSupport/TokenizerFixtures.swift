import Foundation

/// Small Hugging Face tokenizer.json files of the two kinds the emulator reads, built in code
/// (ids worked out by hand in the comments, and checked against Python's `tokenizers` on the
/// same files when they were written).
public enum TokenizerFixtures {
    /// Ids 0–255 are the bytes, spelt with GPT-2's table (so id 32 is "Ġ", the space), then:
    /// 256 he, 257 ll, 258 hell, 259 hello, 260 Ġhello, 261 wo, 262 rl, 263 worl, 264 world,
    /// 265 Ġworld, 266 xyz (no merge makes it); added: 267 <|begin_of_text|>, 268 <|end_of_text|>,
    /// 269 <|eot_id|>, 270 <mask> (takes the spaces around it).
    public static func byteLevelFile(mergesAsPairs: Bool = false, ignoreMerges: Bool = true) -> Data {
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
    public static func gpt2Character(_ byte: UInt8) -> String {
        let printable: (UInt8) -> Bool = { (0x21...0x7E).contains($0) || (0xA1...0xAC).contains($0) || (0xAE...0xFF).contains($0) }
        if printable(byte) { return String(UnicodeScalar(byte)) }
        let rank = (0..<byte).filter { !printable($0) }.count
        return String(Character(Unicode.Scalar(UInt32(256 + rank)) ?? "?"))
    }

    public static func json(_ object: [String: Any]) -> Data {
        (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
    }

    /// 0 <unk>, 1 <s>, 2 </s>, 3–258 the byte tokens <0x00>…<0xFF> (byte b is id 3 + b), then
    /// 259 ▁, 260 h, 261 e, 262 l, 263 o, 264 w, 265 r, 266 d, 267 a, 268 c, 269 f, and the merges'
    /// tokens 270 ▁h, 271 ll, 272 ▁he, 273 ▁hell, 274 ▁hello, 275 ▁w, 276 or, 277 ▁wor, 278 ▁worl,
    /// 279 ▁world. No "é", "x" or newline: those fall back to bytes.
    public static func sentencePieceFile(metaspace: Bool = false, byteFallback: Bool = true) -> Data {
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
}

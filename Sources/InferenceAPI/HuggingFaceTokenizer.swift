import Foundation

/// Why a tokenizer.json can't be used: the file, and what in it is missing, malformed or not
/// supported, e.g. `model.type "Unigram" is not supported (supported: BPE)`.
public struct TokenizerFileError: Error, CustomStringConvertible {
    /// The file's path, or `tokenizer.json` when its content was handed over as data.
    public let file: String
    /// What is wrong, naming the JSON field as `tokenizers` spells it.
    public let problem: String

    public init(file: String, problem: String) {
        self.file = file
        self.problem = problem
    }

    public var description: String { "\(file): \(problem)" }
}

/// A model's own tokenizer, read from its Hugging Face `tokenizer.json`, so that token counts,
/// prompt ids and token strings are the ones vLLM (through `tokenizers`) gives for that model.
///
/// Two kinds of BPE file are supported, with every rule read from the file:
/// - byte-level (GPT-2, Llama 3, Qwen 2/3): text bytes are spelt with GPT-2's byte-to-character
///   table by a `ByteLevel` pre-tokenizer, alone or after `Split` regexes;
/// - SentencePiece-style (Llama 2, Mistral): spaces become `▁` through `Prepend`/`Replace`
///   normalizers or a `Metaspace` pre-tokenizer, and characters outside the vocabulary fall
///   back to `<0xAB>` byte tokens.
///
/// The steps are those of `tokenizers`: added tokens are cut out of the text first, then the
/// normalizer, pre-tokenizer, BPE model and post-processor run; `decode` runs the decoder.
/// Anything else (Unigram or WordPiece models, BERT normalizers, …) is refused by the
/// initialisers with a `TokenizerFileError` naming the field.
///
/// It is immutable and keeps no cache, so one instance serves any number of connections.
public struct HuggingFaceTokenizer: Sendable {
    /// Largest id in the vocabulary or the added tokens, plus one.
    public let vocabularySize: Int
    /// The beginning-of-sequence token: the first special token the post-processor's template
    /// puts before the text, else the token named `<|begin_of_text|>` or `<s>`; nil when the file
    /// has neither (GPT-2, Qwen).
    public let bosTokenID: Int?
    /// The end-of-sequence token: the first of `<|endoftext|>`, `<|end_of_text|>`, `<|eot_id|>`,
    /// `</s>`, `<|im_end|>` the file has, else the last special token the template puts after
    /// the text; nil when there is none. A tokenizer.json doesn't say whether its model is a base
    /// or a chat model, so the base model's end of text wins over a chat model's end of turn
    /// (Llama 3 gives `<|end_of_text|>`, Qwen `<|endoftext|>`); tokenizer_config.json says which.
    public let eosTokenID: Int?
    /// Whether `encode(_:addSpecialTokens: true)` puts a BOS token first: the post-processor
    /// (TemplateProcessing, as Llama 2 and 3 have, or Roberta/Bert) has a special token before
    /// the text.
    public let addsBOS: Bool
    /// Ordinary word-like tokens, a space marker (`Ġ` or `▁`) and then two or more ASCII letters,
    /// for writing plausible made-up text; all ids that aren't special tokens when the vocabulary
    /// has no such token. Ascending.
    public let textTokenIDs: [Int]
    /// Single-token punctuation (a full stop, a comma, a newline) for writing made-up text.
    public private(set) var punctuationIDs: [Int] = []

    /// Token strings by id; "" where no token has the id.
    private let tokens: [String]
    /// Whether each id is a special added token, which decoding may skip and `bytes(of:)` drops.
    private let special: [Bool]
    private let model: BPEModel
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let decoder: TokenDecoder?
    /// Added tokens with `normalized: false`, matched in the text as given.
    private let rawAddedTokens: AddedTokenMatcher
    /// Added tokens with `normalized: true`, matched in the normalized text.
    private let normalizedAddedTokens: AddedTokenMatcher
    /// What the post-processor puts before and after the text when special tokens are added.
    private let prefixIDs: [Int]
    private let suffixIDs: [Int]

    /// Reads a tokenizer.json file; errors name its path.
    public init(contentsOf url: URL) throws {
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerFileError(file: url.path, problem: "cannot be read (\(error.localizedDescription))")
        }
        try self.init(json: data, file: url.path)
    }

    /// Reads tokenizer.json content handed over as data; errors name it `tokenizer.json`.
    public init(json data: Data) throws {
        try self.init(json: data, file: "tokenizer.json")
    }

    private init(json data: Data, file: String) throws {
        let reader = FileReader(file: file)
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: data)
        } catch {
            throw reader.fail("is not valid JSON")
        }
        guard let root = parsed as? [String: Any] else { throw reader.fail("is not a JSON object") }

        let modelObject = try reader.object(root["model"], "model")
        let modelType: String
        if let type = modelObject["type"] {
            modelType = try reader.string(type, "model.type")
        } else if modelObject["merges"] != nil {
            modelType = "BPE"  // files written before models were tagged with their type
        } else {
            throw reader.fail("model.type is missing")
        }
        guard modelType == "BPE" else { throw reader.unsupported("model", modelType, ["BPE"]) }

        // The model's vocabulary, keyed by UTF-8 bytes (see TokenKey).
        let vocabObject = try reader.object(modelObject["vocab"], "model.vocab")
        var vocab: [TokenKey: Int32] = [:]
        vocab.reserveCapacity(vocabObject.count)
        var largestID = -1
        for (token, value) in vocabObject {
            let id = try reader.tokenID(value, "model.vocab[\(Self.quoted(token))]")
            vocab[TokenKey(token)] = Int32(id)
            largestID = max(largestID, id)
        }

        // Added tokens take the ids `tokenizers` gives them, whatever `id` the file writes (it only
        // warns about a difference): one in the vocabulary keeps its vocabulary id, the others
        // count up from the vocabulary's size in file order. Files it wrote agree with this.
        var addedTokens: [AddedToken] = []
        var addedIndex: [TokenKey: Int] = [:]
        var nextID = vocab.count
        for var token in try Self.readAddedTokens(root["added_tokens"], reader) {
            let key = TokenKey(token.content)
            if let index = addedIndex[key] {
                // Listed twice: the later settings win, but a special token stays special.
                token.id = addedTokens[index].id
                token.special = token.special || addedTokens[index].special
                addedTokens[index] = token
                continue
            }
            if let id = vocab[key] {
                token.id = Int(id)
            } else {
                token.id = nextID
                nextID += 1
            }
            addedIndex[key] = addedTokens.count
            addedTokens.append(token)
            largestID = max(largestID, token.id)
        }
        guard largestID >= 0 else { throw reader.fail("model.vocab is empty") }
        guard largestID <= FileReader.largestID else { throw reader.fail("added_tokens take ids beyond \(FileReader.largestID)") }
        let size = largestID + 1

        var tokens = [String](repeating: "", count: size)
        for (token, value) in vocabObject {
            // Every id was checked, with its path in the error, by the first pass over the vocabulary.
            guard let id = try? reader.tokenID(value, "") else { continue }
            // Two strings for one id: keep the smaller, so token strings don't change between runs.
            if tokens[id].isEmpty || Array(token.utf8).lexicographicallyPrecedes(Array(tokens[id].utf8)) {
                tokens[id] = token
            }
        }
        var special = [Bool](repeating: false, count: size)
        var isAdded = [Bool](repeating: false, count: size)
        for token in addedTokens {
            tokens[token.id] = token.content
            special[token.id] = token.special
            isAdded[token.id] = true
        }

        let normalizer = try Normalizer.parse(root["normalizer"], "normalizer", reader)
        let preTokenizer = try PreTokenizer.parse(root["pre_tokenizer"], "pre_tokenizer", reader)
        let decoder = try TokenDecoder.parse(root["decoder"], "decoder", reader)
        let template = try PostProcessor.parse(root["post_processor"], "post_processor", reader, vocabularySize: size)
        let model = try BPEModel(modelObject, vocab: vocab, reader)

        var rawAdded = AddedTokenMatcher()
        var normalizedAdded = AddedTokenMatcher()
        for token in addedTokens {
            let entry = AddedTokenMatcher.Entry(id: token.id, singleWord: token.singleWord, lstrip: token.lstrip, rstrip: token.rstrip)
            if token.normalized {
                // `tokenizers` looks for a normalized token in its normalized spelling.
                let spelling = normalizer?.apply(to: token.content) ?? token.content
                normalizedAdded.insert(Array(spelling.utf8), entry)
            } else {
                rawAdded.insert(Array(token.content.utf8), entry)
            }
        }

        func id(named name: String) -> Int? {
            if let index = addedIndex[TokenKey(name)] { return addedTokens[index].id }
            return vocab[TokenKey(name)].map(Int.init)
        }
        let bos = template.prefix.first ?? ["<|begin_of_text|>", "<s>"].lazy.compactMap(id(named:)).first
        let eosNames = ["<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "</s>", "<|im_end|>"]
        let eos = eosNames.lazy.compactMap(id(named:)).first ?? template.suffix.last

        var words: [Int] = []
        for id in 0..<size where !isAdded[id] && Self.isWordToken(tokens[id]) { words.append(id) }
        if words.isEmpty {
            words = (0..<size).filter { !special[$0] && !tokens[$0].isEmpty }
        }

        self.vocabularySize = size
        self.bosTokenID = bos
        self.eosTokenID = eos
        self.addsBOS = !template.prefix.isEmpty
        self.textTokenIDs = words
        self.tokens = tokens
        self.special = special
        self.model = model
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.decoder = decoder
        self.rawAddedTokens = rawAdded
        self.normalizedAddedTokens = normalizedAdded
        self.prefixIDs = template.prefix
        self.suffixIDs = template.suffix
        // Punctuation made-up text may use: what ".", "," and a newline encode to, where one token.
        self.punctuationIDs = [".", ",", "\n"].compactMap { mark in
            let ids = self.encode(mark, addSpecialTokens: false)
            return ids.count == 1 ? ids[0] : nil
        }
    }

    /// Token ids for `text`, as `tokenizer.encode(text, add_special_tokens=...)` gives them.
    /// Added tokens written in the text (`<|im_start|>`, `<s>`, …) become their ids; with
    /// `addSpecialTokens`, the post-processor's BOS (and anything else its template adds) is
    /// added around the text.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + prefixIDs.count + suffixIDs.count + 1)
        if addSpecialTokens { ids.append(contentsOf: prefixIDs) }
        var workspace = BPEWorkspace()
        let bytes = Array(text.utf8)
        for part in rawAddedTokens.split(bytes) {
            switch part {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                let segment = String(decoding: bytes[range], as: UTF8.self)
                encodeSegment(segment, atStart: range.lowerBound == 0, into: &ids, workspace: &workspace)
            }
        }
        if addSpecialTokens { ids.append(contentsOf: suffixIDs) }
        return ids
    }

    /// Text for `ids`, as `tokenizer.decode(ids, skip_special_tokens=...)` gives it. Ids no token
    /// has are left out; bytes that aren't valid UTF-8 become U+FFFD.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = true) -> String {
        var pieces: [String] = []
        pieces.reserveCapacity(ids.count)
        for id in ids where id >= 0 && id < tokens.count && !tokens[id].isEmpty {
            if skipSpecialTokens && special[id] { continue }
            pieces.append(tokens[id])
        }
        guard let decoder else { return pieces.joined(separator: " ") }
        return decoder.decode(pieces).joined()
    }

    /// The token's vocabulary string, as `convert_ids_to_tokens` gives it ("Ġhello", "▁hello",
    /// "<0x0A>", "<|eot_id|>"); "" for an id no token has.
    public func tokenString(_ id: Int) -> String {
        guard id >= 0, id < tokens.count else { return "" }
        return tokens[id]
    }

    /// The bytes one token adds to decoded text, for streaming text out a token at a time: "Ġhi"
    /// and "▁hi" give " hi", "<0xE2>" gives the byte E2 (the rest of its character follows in
    /// later tokens). A token is taken as coming after others, so the decoder's strip of the
    /// text's first space doesn't apply. Special tokens and unknown ids give nothing.
    public func bytes(of id: Int) -> [UInt8] {
        guard id >= 0, id < tokens.count, !special[id] else { return [] }
        let token = tokens[id]
        guard !token.isEmpty else { return [] }
        guard let decoder else { return Array(token.utf8) }
        return decoder.bytes(ofToken: token)
    }

    /// Encodes one stretch of text between added tokens (`atStart` when it begins the text).
    private func encodeSegment(_ segment: String, atStart: Bool, into ids: inout [Int], workspace: inout BPEWorkspace) {
        let normalized = normalizer?.apply(to: segment) ?? segment
        let bytes = Array(normalized.utf8)
        for part in normalizedAddedTokens.split(bytes) {
            switch part {
            case .token(let id):
                ids.append(id)
            case .text(let range):
                var pieces = [Piece(bytes: Array(bytes[range]), atStart: atStart && range.lowerBound == 0, isByteLevel: false)]
                if let preTokenizer { pieces = preTokenizer.apply(to: pieces) }
                for piece in pieces { model.encode(piece, into: &ids, workspace: &workspace) }
            }
        }
    }

    /// A space marker, then at least two ASCII letters and nothing else.
    private static func isWordToken(_ token: String) -> Bool {
        var scalars = token.unicodeScalars.makeIterator()
        guard let marker = scalars.next(), marker == "\u{120}" || marker == "\u{2581}" else { return false }
        var letters = 0
        while let scalar = scalars.next() {
            guard (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") else { return false }
            letters += 1
        }
        return letters >= 2
    }

    private struct AddedToken {
        /// Assigned after reading, as `tokenizers` assigns it.
        var id = 0
        let content: String
        var special: Bool
        let normalized: Bool
        let singleWord: Bool
        let lstrip: Bool
        let rstrip: Bool
    }

    private static func readAddedTokens(_ value: Any?, _ reader: FileReader) throws -> [AddedToken] {
        guard let list = try reader.optionalArray(value, "added_tokens") else { return [] }
        return try list.enumerated().compactMap { index, element in
            let path = "added_tokens[\(index)]"
            let object = try reader.object(element, path)
            let content = try reader.string(object["content"], "\(path).content")
            guard !content.isEmpty else { return nil }  // `tokenizers` ignores these too
            let special = try reader.bool(object["special"], "\(path).special", default: false)
            return AddedToken(
                content: content, special: special,
                normalized: try reader.bool(object["normalized"], "\(path).normalized", default: !special),
                singleWord: try reader.bool(object["single_word"], "\(path).single_word", default: false),
                lstrip: try reader.bool(object["lstrip"], "\(path).lstrip", default: false),
                rstrip: try reader.bool(object["rstrip"], "\(path).rstrip", default: false))
        }
    }
}

extension HuggingFaceTokenizer {
    // MARK: - Reading the JSON

    /// Typed access to the parsed JSON, with errors that name the file and the field.
    fileprivate struct FileReader {
        let file: String
        /// Ids above this are taken for a broken file rather than a vocabulary (the largest real
        /// ones are a few hundred thousand).
        static let largestID = 10_000_000

        func fail(_ problem: String) -> TokenizerFileError { TokenizerFileError(file: file, problem: problem) }

        func unsupported(_ path: String, _ type: String, _ supported: [String]) -> TokenizerFileError {
            fail("\(path).type \(quoted(type)) is not supported (supported: \(supported.joined(separator: ", ")))")
        }

        /// Missing or JSON null. Compares types: `value is NSNull` would bridge a whole dictionary
        /// (the vocabulary) to NSDictionary just to say no.
        func isAbsent(_ value: Any?) -> Bool {
            guard let value else { return true }
            return Swift.type(of: value) is NSNull.Type
        }

        func object(_ value: Any?, _ path: String) throws -> [String: Any] {
            guard !isAbsent(value) else { throw fail("\(path) is missing") }
            guard let object = value as? [String: Any] else { throw fail("\(path) is not a JSON object") }
            return object
        }

        func optionalObject(_ value: Any?, _ path: String) throws -> [String: Any]? {
            isAbsent(value) ? nil : try object(value, path)
        }

        func array(_ value: Any?, _ path: String) throws -> [Any] {
            guard !isAbsent(value) else { throw fail("\(path) is missing") }
            guard let array = value as? [Any] else { throw fail("\(path) is not a JSON array") }
            return array
        }

        func optionalArray(_ value: Any?, _ path: String) throws -> [Any]? {
            isAbsent(value) ? nil : try array(value, path)
        }

        func string(_ value: Any?, _ path: String) throws -> String {
            guard !isAbsent(value) else { throw fail("\(path) is missing") }
            guard let string = value as? String else { throw fail("\(path) is not a string") }
            return string
        }

        func bool(_ value: Any?, _ path: String, default defaultValue: Bool) throws -> Bool {
            if isAbsent(value) { return defaultValue }
            guard let bool = value as? Bool else { throw fail("\(path) is not true or false") }
            return bool
        }

        /// A whole number from 0 to `limit`.
        func count(_ value: Any?, _ path: String, default defaultValue: Int, limit: Int = Int(Int32.max)) throws -> Int {
            if isAbsent(value) { return defaultValue }
            guard let number = value as? Int, number >= 0, number <= limit else {
                throw fail("\(path) is not a whole number from 0 to \(limit)")
            }
            return number
        }

        func tokenID(_ value: Any?, _ path: String) throws -> Int {
            if let id = value as? Int, id >= 0, id <= Self.largestID { return id }
            let rule = "not a token id (a whole number from 0 to \(Self.largestID))"
            switch value {
            case let number as NSNumber: throw fail("\(path) is \(number), \(rule)")
            case let text as String: throw fail("\(path) is \(quoted(text)), \(rule)")
            default: throw fail(isAbsent(value) ? "\(path) is missing" : "\(path) is \(rule)")
            }
        }

        /// The single character a field such as `replacement` holds.
        func character(_ value: Any?, _ path: String) throws -> Unicode.Scalar {
            let text = try string(value, path)
            guard text.unicodeScalars.count == 1, let scalar = text.unicodeScalars.first else {
                throw fail("\(path) \(quoted(text)) is not a single character")
            }
            return scalar
        }

        func type(_ object: [String: Any], _ path: String) throws -> String {
            try string(object["type"], "\(path).type")
        }

        /// A `{"String": …}` or `{"Regex": …}` pattern.
        func pattern(_ value: Any?, _ path: String) throws -> TextPattern {
            let object = try object(value, path)
            if let literal = object["String"] {
                return .literal(Array(try string(literal, "\(path).String").utf8))
            }
            if let source = object["Regex"] {
                return .regex(try regex(try string(source, "\(path).Regex"), "\(path).Regex"))
            }
            throw fail("\(path) has neither String nor Regex")
        }

        func regex(_ source: String, _ path: String) throws -> NSRegularExpression {
            do {
                return try compileRegex(source)
            } catch {
                throw fail("\(path) \(quoted(source)) is not a regular expression NSRegularExpression can compile")
            }
        }
    }

    /// A token's UTF-8 as a dictionary key. Bytes, not String: String keys compare canonically
    /// equivalent text ("é" and "e\u{301}") as equal, where `tokenizers` compares bytes. Hashed in
    /// one call, as Array's own hashing feeds the hasher a byte at a time.
    fileprivate struct TokenKey: Hashable, Sendable {
        let bytes: [UInt8]

        init(_ bytes: [UInt8]) { self.bytes = bytes }
        init(_ text: String) { self.bytes = Array(text.utf8) }

        func hash(into hasher: inout Hasher) {
            bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }

    /// Quotes text for an error message, shortened so a huge field can't flood a log.
    fileprivate static func quoted(_ text: String) -> String {
        let shown = text.unicodeScalars.count > 80 ? String(text.unicodeScalars.prefix(80)) + "…" : text
        return "\"\(shown)\""
    }

    /// Compiles a `tokenizers` (Oniguruma) pattern with ICU. Oniguruma's `\s` is Unicode White_Space,
    /// which has U+000B and U+0085 that ICU's `\s` lacks, so `\s`/`\S` are spelt out; ICU takes
    /// `\p{…}` inside brackets too, so `[^\s\p{L}]` stays a valid set.
    fileprivate static func compileRegex(_ source: String) throws -> NSRegularExpression {
        var rewritten = ""
        var escaped = false
        for character in source.unicodeScalars {
            if escaped {
                switch character {
                case "s": rewritten += "p{White_Space}"
                case "S": rewritten += "P{White_Space}"
                default: rewritten.unicodeScalars.append(character)
                }
                escaped = false
            } else {
                rewritten.unicodeScalars.append(character)
                escaped = character == "\\"
            }
        }
        return try NSRegularExpression(pattern: rewritten)
    }

    // MARK: - Text between the steps

    /// A pre-token: UTF-8 bytes, whether it begins the text (Metaspace's "first" scheme prepends
    /// only there), and whether its bytes still await GPT-2's byte-to-character spelling. The
    /// spelling is applied lazily: BPE reads the bytes straight, saving a string per pre-token.
    fileprivate struct Piece {
        var bytes: [UInt8]
        var atStart: Bool
        var isByteLevel: Bool

        /// The bytes as the vocabulary spells them.
        func spelled() -> Piece {
            guard isByteLevel else { return self }
            var spelledBytes: [UInt8] = []
            spelledBytes.reserveCapacity(bytes.count * 2)
            for byte in bytes { spelledBytes.append(contentsOf: ByteLevel.utf8[Int(byte)]) }
            return Piece(bytes: spelledBytes, atStart: atStart, isByteLevel: false)
        }
    }

    /// A `{"String": …}` (matched literally, as `tokenizers` escapes it) or `{"Regex": …}` pattern.
    fileprivate enum TextPattern: Sendable {
        case literal([UInt8])
        case regex(NSRegularExpression)

        /// Byte ranges of the matches in `bytes` (valid UTF-8), left to right, not overlapping.
        func matches(in bytes: [UInt8]) -> [Range<Int>] {
            switch self {
            case .literal(let pattern):
                return literalMatches(of: pattern, in: bytes)
            case .regex(let regex):
                return regexMatches(of: regex, in: bytes)
            }
        }

        func replacingMatches(in bytes: [UInt8], with content: [UInt8]) -> [UInt8] {
            let found = matches(in: bytes)
            guard !found.isEmpty else { return bytes }
            var result: [UInt8] = []
            result.reserveCapacity(bytes.count + found.count * content.count)
            var copied = 0
            for range in found {
                result.append(contentsOf: bytes[copied..<range.lowerBound])
                result.append(contentsOf: content)
                copied = range.upperBound
            }
            result.append(contentsOf: bytes[copied...])
            return result
        }
    }

    fileprivate static func literalMatches(of pattern: [UInt8], in bytes: [UInt8]) -> [Range<Int>] {
        guard let first = pattern.first, pattern.count <= bytes.count else { return [] }
        var found: [Range<Int>] = []
        var index = 0
        let last = bytes.count - pattern.count
        while index <= last {
            if bytes[index] == first && bytes[index..<(index + pattern.count)].elementsEqual(pattern) {
                found.append(index..<(index + pattern.count))
                index += pattern.count
            } else {
                index += 1
            }
        }
        return found
    }

    /// Runs the regex on the text the bytes spell and turns its UTF-16 ranges into byte ranges,
    /// walking the bytes once since the matches come in order.
    fileprivate static func regexMatches(of regex: NSRegularExpression, in bytes: [UInt8]) -> [Range<Int>] {
        guard !bytes.isEmpty else { return [] }
        let text = String(decoding: bytes, as: UTF8.self)
        let results = regex.matches(in: text, range: NSRange(location: 0, length: text.utf16.count))
        var byteOffset = 0
        var utf16Offset = 0
        func advance(toUTF16 target: Int) -> Int {
            while utf16Offset < target && byteOffset < bytes.count {
                let length = utf8Length(leading: bytes[byteOffset])
                byteOffset = min(byteOffset + length, bytes.count)
                utf16Offset += length == 4 ? 2 : 1
            }
            return byteOffset
        }
        var found: [Range<Int>] = []
        found.reserveCapacity(results.count)
        for result in results {
            let range = result.range
            guard range.location != NSNotFound, range.location >= utf16Offset else { continue }
            let start = advance(toUTF16: range.location)
            let end = advance(toUTF16: range.location + range.length)
            found.append(start..<end)
        }
        return found
    }

    fileprivate static func utf8Length(leading byte: UInt8) -> Int {
        switch byte {
        case ..<0xC0: return 1
        case ..<0xE0: return 2
        case ..<0xF0: return 3
        default: return 4
        }
    }

    /// Decodes the scalar starting at `index` of valid UTF-8 (U+FFFD for a stray byte) and its length.
    fileprivate static func scalar(in bytes: [UInt8], at index: Int) -> (value: UInt32, length: Int) {
        let lead = bytes[index]
        let length = utf8Length(leading: lead)
        guard lead >= 0xC0, index + length <= bytes.count else { return (lead < 0x80 ? UInt32(lead) : 0xFFFD, 1) }
        var value = UInt32(lead) & (length == 2 ? 0x1F : length == 3 ? 0x0F : 0x07)
        for offset in 1..<length { value = value << 6 | UInt32(bytes[index + offset] & 0x3F) }
        return (value, length)
    }

    /// The scalar that ends just before `index`, and where it starts; nil at the start.
    fileprivate static func scalar(in bytes: [UInt8], before index: Int) -> (value: UInt32, start: Int)? {
        guard index > 0 else { return nil }
        var start = index - 1
        while start > 0 && index - start < 4 && bytes[start] & 0xC0 == 0x80 { start -= 1 }
        return (scalar(in: bytes, at: start).value, start)
    }

    fileprivate static func isWhitespace(_ value: UInt32) -> Bool {
        Unicode.Scalar(value)?.properties.isWhitespace ?? false
    }

    /// Whether the scalar is what the Rust regex `\w` matches (added tokens' `single_word` test).
    fileprivate static func isWordCharacter(_ value: UInt32) -> Bool {
        guard let scalar = Unicode.Scalar(value) else { return false }
        if scalar.properties.isAlphabetic || scalar.properties.isJoinControl { return true }
        switch scalar.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// GPT-2's table spelling every byte as a printable character: printable Latin-1 bytes stand for
    /// themselves, the others (controls, space, soft hyphen…) take U+0100 onwards in byte order.
    fileprivate enum ByteLevel {
        static let scalars: [UInt32] = {
            var table = [UInt32](repeating: 0, count: 256)
            var next: UInt32 = 256
            for byte in 0..<256 {
                if (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte) {
                    table[byte] = UInt32(byte)
                } else {
                    table[byte] = next
                    next += 1
                }
            }
            return table
        }()

        /// Each byte's character as UTF-8.
        static let utf8: [[UInt8]] = scalars.map { value in
            Unicode.Scalar(value).map { Array(String(Character($0)).utf8) } ?? []
        }

        /// The byte each table character stands for, by scalar value (-1 for other characters).
        static let bytes: [Int16] = {
            var table = [Int16](repeating: -1, count: 0x144)
            for (byte, value) in scalars.enumerated() { table[Int(value)] = Int16(byte) }
            return table
        }()

        /// The bytes a token spells, as `tokenizers` decodes it: a token with any character outside
        /// the table (an added token like "<think>" is inside it) stands for its own UTF-8.
        static func decode(_ token: String, into result: inout [UInt8]) {
            let start = result.count
            for scalar in token.unicodeScalars {
                let value = Int(scalar.value)
                guard value < bytes.count, bytes[value] >= 0 else {
                    result.removeSubrange(start...)
                    result.append(contentsOf: token.utf8)
                    return
                }
                result.append(UInt8(truncatingIfNeeded: bytes[value]))
            }
        }
    }

    // MARK: - Normalizer

    fileprivate indirect enum Normalizer: Sendable {
        case sequence([Normalizer])
        case prepend(String)
        case replace(TextPattern, [UInt8])
        case nfc, nfd, nfkc, nfkd
        case lowercase
        case strip(left: Bool, right: Bool)

        static let supported = ["Lowercase", "NFC", "NFD", "NFKC", "NFKD", "Prepend", "Replace", "Sequence", "Strip"]

        static func parse(_ value: Any?, _ path: String, _ reader: FileReader) throws -> Normalizer? {
            guard let object = try reader.optionalObject(value, path) else { return nil }
            let type = try reader.type(object, path)
            switch type {
            case "Sequence":
                let list = try reader.array(object["normalizers"], "\(path).normalizers")
                return .sequence(try list.enumerated().compactMap { index, element in
                    try parse(element, "\(path).normalizers[\(index)]", reader)
                })
            case "Prepend":
                return .prepend(try reader.string(object["prepend"], "\(path).prepend"))
            case "Replace":
                let content = try reader.string(object["content"], "\(path).content")
                return .replace(try reader.pattern(object["pattern"], "\(path).pattern"), Array(content.utf8))
            case "NFC": return .nfc
            case "NFD": return .nfd
            case "NFKC": return .nfkc
            case "NFKD": return .nfkd
            case "Lowercase": return .lowercase
            case "Strip":
                return .strip(
                    left: try reader.bool(object["strip_left"], "\(path).strip_left", default: true),
                    right: try reader.bool(object["strip_right"], "\(path).strip_right", default: true))
            default:
                throw reader.unsupported(path, type, supported)
            }
        }

        func apply(to text: String) -> String {
            switch self {
            case .sequence(let steps):
                return steps.reduce(text) { $1.apply(to: $0) }
            case .prepend(let prefix):
                return text.isEmpty ? text : prefix + text
            case .replace(let pattern, let content):
                return String(decoding: pattern.replacingMatches(in: Array(text.utf8), with: content), as: UTF8.self)
            case .nfc: return text.precomposedStringWithCanonicalMapping
            case .nfd: return text.decomposedStringWithCanonicalMapping
            case .nfkc: return text.precomposedStringWithCompatibilityMapping
            case .nfkd: return text.decomposedStringWithCompatibilityMapping
            case .lowercase:
                // Scalar by scalar, as Rust's char::to_lowercase does (no context-dependent final sigma).
                var result = ""
                result.unicodeScalars.reserveCapacity(text.unicodeScalars.count)
                for scalar in text.unicodeScalars { result += scalar.properties.lowercaseMapping }
                return result
            case .strip(let left, let right):
                var scalars = Substring(text).unicodeScalars[...]
                if left { while let first = scalars.first, first.properties.isWhitespace { scalars.removeFirst() } }
                if right { while let last = scalars.last, last.properties.isWhitespace { scalars.removeLast() } }
                return String(scalars)
            }
        }
    }

    // MARK: - Pre-tokenizer

    fileprivate enum SplitBehavior: String, Sendable, CaseIterable {
        case isolated = "Isolated", removed = "Removed", mergedWithPrevious = "MergedWithPrevious"
        case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
    }

    fileprivate enum PrependScheme: String, Sendable {
        case first, always, never
    }

    fileprivate indirect enum PreTokenizer: Sendable {
        case sequence([PreTokenizer])
        /// GPT-2's: a space before each piece if asked, its word regex if asked, then byte spelling.
        case byteLevel(addPrefixSpace: Bool, regex: NSRegularExpression?)
        case split(TextPattern, SplitBehavior, invert: Bool)
        case metaspace(replacement: [UInt8], scheme: PrependScheme, split: Bool)
        case digits(individually: Bool)
        case whitespace
        case whitespaceSplit

        static let supported = ["ByteLevel", "Digits", "Metaspace", "Sequence", "Split", "Whitespace", "WhitespaceSplit"]
        static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

        static func parse(_ value: Any?, _ path: String, _ reader: FileReader) throws -> PreTokenizer? {
            guard let object = try reader.optionalObject(value, path) else { return nil }
            let type = try reader.type(object, path)
            switch type {
            case "Sequence":
                let list = try reader.array(object["pretokenizers"], "\(path).pretokenizers")
                return .sequence(try list.enumerated().compactMap { index, element in
                    try parse(element, "\(path).pretokenizers[\(index)]", reader)
                })
            case "ByteLevel":
                let useRegex = try reader.bool(object["use_regex"], "\(path).use_regex", default: true)
                return .byteLevel(
                    addPrefixSpace: try reader.bool(object["add_prefix_space"], "\(path).add_prefix_space", default: true),
                    regex: useRegex ? try reader.regex(gpt2Pattern, "\(path) (GPT-2's regex)") : nil)
            case "Split":
                let behaviorName = try reader.string(object["behavior"], "\(path).behavior")
                guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                    let supported = SplitBehavior.allCases.map(\.rawValue).joined(separator: ", ")
                    throw reader.fail("\(path).behavior \(quoted(behaviorName)) is not supported (supported: \(supported))")
                }
                return .split(
                    try reader.pattern(object["pattern"], "\(path).pattern"), behavior,
                    invert: try reader.bool(object["invert"], "\(path).invert", default: false))
            case "Metaspace":
                let replacement = try reader.character(object["replacement"], "\(path).replacement")
                return .metaspace(
                    replacement: Array(String(Character(replacement)).utf8),
                    scheme: try prependScheme(object, path, reader),
                    split: try reader.bool(object["split"], "\(path).split", default: true))
            case "Digits":
                return .digits(individually: try reader.bool(object["individual_digits"], "\(path).individual_digits", default: false))
            case "Whitespace":
                return .whitespace
            case "WhitespaceSplit":
                return .whitespaceSplit
            default:
                throw reader.unsupported(path, type, supported)
            }
        }

        /// Metaspace's `prepend_scheme`; older files say `add_prefix_space` instead.
        static func prependScheme(_ object: [String: Any], _ path: String, _ reader: FileReader) throws -> PrependScheme {
            if let name = object["prepend_scheme"], !reader.isAbsent(name) {
                let text = try reader.string(name, "\(path).prepend_scheme")
                guard let scheme = PrependScheme(rawValue: text) else {
                    throw reader.fail("\(path).prepend_scheme \(quoted(text)) is not supported (supported: first, always, never)")
                }
                return scheme
            }
            return try reader.bool(object["add_prefix_space"], "\(path).add_prefix_space", default: true) ? .always : .never
        }

        // Character tests of `tokenizers` written as one-character regexes, so each character is a match.
        private static let digit = compiledOrNil(#"\p{N}"#)
        private static let space = compiledOrNil(#"\s"#)
        private static let word = compiledOrNil(#"\w+|[^\w\s]+"#)

        private static func compiledOrNil(_ source: String) -> TextPattern? {
            // Fixed patterns, not the file's: were one refused, its step would split nothing
            // rather than fail every tokenizer that uses it.
            (try? compileRegex(source)).map(TextPattern.regex)
        }

        func apply(to pieces: [Piece]) -> [Piece] {
            switch self {
            case .sequence(let steps):
                return steps.reduce(pieces) { $1.apply(to: $0) }
            case .byteLevel(let addPrefixSpace, let regex):
                var result: [Piece] = []
                for original in pieces {
                    var piece = original.spelled()
                    if addPrefixSpace && piece.bytes.first != UInt8(ascii: " ") { piece.bytes.insert(UInt8(ascii: " "), at: 0) }
                    piece.isByteLevel = true
                    if let regex {
                        result += splitPiece(piece, at: regexMatches(of: regex, in: piece.bytes), invert: false, behavior: .isolated)
                    } else {
                        result.append(piece)
                    }
                }
                return result
            case .split(let pattern, let behavior, let invert):
                return pieces.flatMap { original in
                    let piece = original.spelled()
                    return splitPiece(piece, at: pattern.matches(in: piece.bytes), invert: invert, behavior: behavior)
                }
            case .metaspace(let replacement, let scheme, let splits):
                return pieces.flatMap { original in
                    var piece = original.spelled()
                    piece.bytes = TextPattern.literal([UInt8(ascii: " ")]).replacingMatches(in: piece.bytes, with: replacement)
                    let prepends = scheme == .always || (scheme == .first && piece.atStart)
                    if prepends && !piece.bytes.starts(with: replacement) { piece.bytes.insert(contentsOf: replacement, at: 0) }
                    guard splits else { return [piece] }
                    return splitPiece(piece, at: literalMatches(of: replacement, in: piece.bytes), invert: false, behavior: .mergedWithNext)
                }
            case .digits(let individually):
                return splitEach(pieces, with: Self.digit, invert: false, behavior: individually ? .isolated : .contiguous)
            case .whitespace:
                return splitEach(pieces, with: Self.word, invert: true, behavior: .removed)
            case .whitespaceSplit:
                return splitEach(pieces, with: Self.space, invert: false, behavior: .removed)
            }
        }

        private func splitEach(_ pieces: [Piece], with pattern: TextPattern?, invert: Bool, behavior: SplitBehavior) -> [Piece] {
            guard let pattern else { return pieces }
            return pieces.flatMap { original in
                let piece = original.spelled()
                return splitPiece(piece, at: pattern.matches(in: piece.bytes), invert: invert, behavior: behavior)
            }
        }
    }

    /// Cuts a piece at pattern matches the way `tokenizers`' `NormalizedString::split` does: the
    /// matches and the stretches between them are kept apart, dropped or joined to a neighbour as
    /// `behavior` says (with `invert`, the stretches between matches count as the matches).
    fileprivate static func splitPiece(_ piece: Piece, at matches: [Range<Int>], invert: Bool, behavior: SplitBehavior) -> [Piece] {
        let count = piece.bytes.count
        guard count > 0 else { return [] }
        var spans: [(range: Range<Int>, isMatch: Bool)] = []
        spans.reserveCapacity(matches.count * 2 + 1)
        var covered = 0
        for match in matches where match.lowerBound >= covered && match.upperBound <= count {
            if covered < match.lowerBound { spans.append((covered..<match.lowerBound, invert)) }
            spans.append((match, !invert))
            covered = match.upperBound
        }
        if covered < count { spans.append((covered..<count, invert)) }

        var kept: [(range: Range<Int>, remove: Bool)] = []
        kept.reserveCapacity(spans.count)
        var previousIsMatch = false
        switch behavior {
        case .isolated:
            kept = spans.map { ($0.range, false) }
        case .removed:
            kept = spans.map { ($0.range, $0.isMatch) }
        case .contiguous:
            for span in spans {
                if span.isMatch == previousIsMatch, let last = kept.last {
                    kept[kept.count - 1] = (last.range.lowerBound..<span.range.upperBound, false)
                } else {
                    kept.append((span.range, false))
                }
                previousIsMatch = span.isMatch
            }
        case .mergedWithPrevious:
            for span in spans {
                if span.isMatch && !previousIsMatch, let last = kept.last {
                    kept[kept.count - 1] = (last.range.lowerBound..<span.range.upperBound, false)
                } else {
                    kept.append((span.range, false))
                }
                previousIsMatch = span.isMatch
            }
        case .mergedWithNext:
            for span in spans.reversed() {
                if span.isMatch && !previousIsMatch, let last = kept.last {
                    kept[kept.count - 1] = (span.range.lowerBound..<last.range.upperBound, false)
                } else {
                    kept.append((span.range, false))
                }
                previousIsMatch = span.isMatch
            }
            kept.reverse()
        }
        return kept.compactMap { range, remove in
            guard !remove, !range.isEmpty else { return nil }
            return Piece(bytes: Array(piece.bytes[range]), atStart: piece.atStart && range.lowerBound == 0, isByteLevel: piece.isByteLevel)
        }
    }

    // MARK: - Post-processor

    /// The special tokens the post-processor puts around a single text.
    fileprivate enum PostProcessor {
        static let supported = ["BertProcessing", "ByteLevel", "RobertaProcessing", "Sequence", "TemplateProcessing"]

        static func parse(_ value: Any?, _ path: String, _ reader: FileReader, vocabularySize: Int) throws -> (prefix: [Int], suffix: [Int]) {
            guard let object = try reader.optionalObject(value, path) else { return ([], []) }
            let type = try reader.type(object, path)
            switch type {
            case "ByteLevel":
                return ([], [])  // offsets only
            case "Sequence":
                let list = try reader.array(object["processors"], "\(path).processors")
                var prefix: [Int] = []
                var suffix: [Int] = []
                for (index, element) in list.enumerated() {
                    // Each processor wraps what the ones before it produced.
                    let inner = try parse(element, "\(path).processors[\(index)]", reader, vocabularySize: vocabularySize)
                    prefix = inner.prefix + prefix
                    suffix += inner.suffix
                }
                return (prefix, suffix)
            case "RobertaProcessing", "BertProcessing":
                let cls = try pairID(object["cls"], "\(path).cls", reader, vocabularySize: vocabularySize)
                let sep = try pairID(object["sep"], "\(path).sep", reader, vocabularySize: vocabularySize)
                return ([cls], [sep])
            case "TemplateProcessing":
                return try template(object, path, reader, vocabularySize: vocabularySize)
            default:
                throw reader.unsupported(path, type, supported)
            }
        }

        /// Roberta's and Bert's `["<s>", 0]`.
        private static func pairID(_ value: Any?, _ path: String, _ reader: FileReader, vocabularySize: Int) throws -> Int {
            let pair = try reader.array(value, path)
            guard pair.count == 2 else { throw reader.fail("\(path) is not a [token, id] pair") }
            return try checked(try reader.tokenID(pair[1], "\(path)[1]"), "\(path)[1]", reader, vocabularySize: vocabularySize)
        }

        /// The `single` template: special tokens before `$A` go first, those after it go last.
        private static func template(
            _ object: [String: Any], _ path: String, _ reader: FileReader, vocabularySize: Int
        ) throws -> (prefix: [Int], suffix: [Int]) {
            let specialTokens = try reader.optionalObject(object["special_tokens"], "\(path).special_tokens") ?? [:]
            var prefix: [Int] = []
            var suffix: [Int] = []
            var seenSequence = false
            for (index, element) in try reader.array(object["single"], "\(path).single").enumerated() {
                let piecePath = "\(path).single[\(index)]"
                let piece = try reader.object(element, piecePath)
                if piece["Sequence"] != nil {
                    seenSequence = true
                    continue
                }
                let token = try reader.object(piece["SpecialToken"], "\(piecePath).SpecialToken")
                let name = try reader.string(token["id"], "\(piecePath).SpecialToken.id")
                let tokenPath = "\(path).special_tokens[\(quoted(name))]"
                let entry = try reader.object(specialTokens[name], tokenPath)
                let ids = try reader.array(entry["ids"], "\(tokenPath).ids").enumerated().map { offset, id in
                    let idPath = "\(tokenPath).ids[\(offset)]"
                    return try checked(try reader.tokenID(id, idPath), idPath, reader, vocabularySize: vocabularySize)
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            }
            return (prefix, suffix)
        }

        private static func checked(_ id: Int, _ path: String, _ reader: FileReader, vocabularySize: Int) throws -> Int {
            guard id < vocabularySize else { throw reader.fail("\(path) is \(id), beyond the vocabulary and added tokens") }
            return id
        }
    }

    // MARK: - Decoder

    fileprivate indirect enum TokenDecoder: Sendable {
        case sequence([TokenDecoder])
        case byteLevel
        case metaspace(replacement: Unicode.Scalar, dropsFirst: Bool)
        case replace(TextPattern, [UInt8])
        case byteFallback
        case fuse
        case strip(content: Unicode.Scalar, start: Int, stop: Int)

        static let supported = ["ByteFallback", "ByteLevel", "Fuse", "Metaspace", "Replace", "Sequence", "Strip"]

        static func parse(_ value: Any?, _ path: String, _ reader: FileReader) throws -> TokenDecoder? {
            guard let object = try reader.optionalObject(value, path) else { return nil }
            let type = try reader.type(object, path)
            switch type {
            case "Sequence":
                let list = try reader.array(object["decoders"], "\(path).decoders")
                return .sequence(try list.enumerated().compactMap { index, element in
                    try parse(element, "\(path).decoders[\(index)]", reader)
                })
            case "ByteLevel":
                return .byteLevel
            case "Metaspace":
                return .metaspace(
                    replacement: try reader.character(object["replacement"], "\(path).replacement"),
                    dropsFirst: try PreTokenizer.prependScheme(object, path, reader) != .never)
            case "Replace":
                let content = try reader.string(object["content"], "\(path).content")
                return .replace(try reader.pattern(object["pattern"], "\(path).pattern"), Array(content.utf8))
            case "ByteFallback":
                return .byteFallback
            case "Fuse":
                return .fuse
            case "Strip":
                return .strip(
                    content: try reader.character(object["content"], "\(path).content"),
                    start: try reader.count(object["start"], "\(path).start", default: 0),
                    stop: try reader.count(object["stop"], "\(path).stop", default: 0))
            default:
                throw reader.unsupported(path, type, supported)
            }
        }

        /// `tokenizers`' `decode_chain`: token strings in, strings out, to be joined.
        func decode(_ tokens: [String]) -> [String] {
            switch self {
            case .sequence(let steps):
                return steps.reduce(tokens) { $1.decode($0) }
            case .byteLevel:
                var bytes: [UInt8] = []
                bytes.reserveCapacity(tokens.count * 4)
                for token in tokens { ByteLevel.decode(token, into: &bytes) }
                return [String(decoding: bytes, as: UTF8.self)]
            case .metaspace(let replacement, let dropsFirst):
                return tokens.enumerated().map { index, token in
                    var result = ""
                    for scalar in token.unicodeScalars {
                        if scalar != replacement {
                            result.unicodeScalars.append(scalar)
                        } else if !(index == 0 && dropsFirst) {
                            result += " "
                        }
                    }
                    return result
                }
            case .replace(let pattern, let content):
                return tokens.map { String(decoding: pattern.replacingMatches(in: Array($0.utf8), with: content), as: UTF8.self) }
            case .byteFallback:
                var result: [String] = []
                result.reserveCapacity(tokens.count)
                var pending: [UInt8] = []
                func flush() {
                    guard !pending.isEmpty else { return }
                    if let text = String(validating: pending, as: UTF8.self) {
                        result.append(text)
                    } else {
                        result += Array(repeating: "\u{FFFD}", count: pending.count)  // one per byte, as `tokenizers` does
                    }
                    pending.removeAll()
                }
                for token in tokens {
                    if let byte = Self.fallbackByte(token) {
                        pending.append(byte)
                    } else {
                        flush()
                        result.append(token)
                    }
                }
                flush()
                return result
            case .fuse:
                return [tokens.joined()]
            case .strip(let content, let start, let stop):
                return tokens.map { token in
                    var scalars = Substring(token).unicodeScalars[...]
                    var dropped = 0
                    while dropped < start, scalars.first == content { scalars.removeFirst(); dropped += 1 }
                    dropped = 0
                    while dropped < stop, scalars.last == content { scalars.removeLast(); dropped += 1 }
                    return String(scalars)
                }
            }
        }

        /// The bytes one token decodes to when it isn't the first: byte tokens give their raw byte
        /// (a partial character stays partial), and steps meant for the whole text's start (Strip,
        /// Metaspace's first space) are skipped.
        func bytes(ofToken token: String) -> [UInt8] {
            var text = token
            for step in steps {
                switch step {
                case .byteLevel:
                    var bytes: [UInt8] = []
                    ByteLevel.decode(text, into: &bytes)
                    return bytes
                case .byteFallback:
                    if let byte = Self.fallbackByte(text) { return [byte] }
                case .metaspace(let replacement, _):
                    var spaced = ""
                    for scalar in text.unicodeScalars { spaced.unicodeScalars.append(scalar == replacement ? " " : scalar) }
                    text = spaced
                case .replace:
                    text = step.decode([text]).joined()
                case .fuse, .strip, .sequence:
                    continue
                }
            }
            return Array(text.utf8)
        }

        /// The decoder's steps in order, sequences flattened.
        private var steps: [TokenDecoder] {
            guard case .sequence(let inner) = self else { return [self] }
            return inner.flatMap(\.steps)
        }

        /// The byte a `<0xAB>` token stands for.
        static func fallbackByte(_ token: String) -> UInt8? {
            let bytes = Array(token.utf8)
            guard bytes.count == 6, bytes.starts(with: Array("<0x".utf8)), bytes[5] == UInt8(ascii: ">"),
                  let high = hexValue(bytes[3]), let low = hexValue(bytes[4]) else { return nil }
            return high << 4 | low
        }

        private static func hexValue(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            default: return nil
            }
        }
    }

    // MARK: - Added tokens

    /// Finds added tokens in text the way `tokenizers` does: leftmost match first, the longest token
    /// at that position, honouring `single_word`, `lstrip` and `rstrip`. A byte trie keeps the search
    /// linear in the text whatever the number of added tokens.
    fileprivate struct AddedTokenMatcher: Sendable {
        struct Entry: Sendable {
            let id: Int
            let singleWord: Bool
            let lstrip: Bool
            let rstrip: Bool
        }

        enum Part {
            case text(Range<Int>)
            case token(Int)
        }

        private var children: [[UInt8: Int32]] = [[:]]
        /// The entry a trie node completes, or -1.
        private var terminal: [Int32] = [-1]
        private var entries: [Entry] = []
        /// Bytes an added token can start with, so most positions are passed over at once.
        private var startsToken = [Bool](repeating: false, count: 256)

        mutating func insert(_ bytes: [UInt8], _ entry: Entry) {
            guard let first = bytes.first else { return }
            var node = 0
            for byte in bytes {
                if let child = children[node][byte] {
                    node = Int(child)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    let child = children.count - 1
                    children[node][byte] = Int32(child)
                    node = child
                }
            }
            guard terminal[node] < 0 else { return }  // the same text twice: the first one counts
            terminal[node] = Int32(entries.count)
            entries.append(entry)
            startsToken[Int(first)] = true
        }

        /// The text cut into stretches and added tokens; empty stretches are left out.
        func split(_ bytes: [UInt8]) -> [Part] {
            guard !entries.isEmpty else { return bytes.isEmpty ? [] : [.text(0..<bytes.count)] }
            var parts: [Part] = []
            var textStart = 0
            var position = 0
            while position < bytes.count {
                guard startsToken[Int(bytes[position])], let (matchEnd, entry) = longestMatch(in: bytes, at: position) else {
                    position += 1
                    continue
                }
                var start = position
                var end = matchEnd
                if entry.singleWord {
                    let wordBefore = scalar(in: bytes, before: start).map { isWordCharacter($0.value) } ?? false
                    let wordAfter = end < bytes.count && isWordCharacter(scalar(in: bytes, at: end).value)
                    if wordBefore || wordAfter {
                        position = matchEnd
                        continue
                    }
                }
                if entry.lstrip {
                    // The whitespace before the token goes with it, but not into an earlier match.
                    while start > textStart, let before = scalar(in: bytes, before: start), isWhitespace(before.value) {
                        start = before.start
                    }
                    start = max(start, textStart)
                }
                if entry.rstrip {
                    while end < bytes.count {
                        let next = scalar(in: bytes, at: end)
                        guard isWhitespace(next.value) else { break }
                        end += next.length
                    }
                }
                if textStart < start { parts.append(.text(textStart..<start)) }
                parts.append(.token(entry.id))
                textStart = end
                position = end
            }
            if textStart < bytes.count { parts.append(.text(textStart..<bytes.count)) }
            return parts
        }

        private func longestMatch(in bytes: [UInt8], at start: Int) -> (end: Int, entry: Entry)? {
            var node = 0
            var best: (end: Int, entry: Entry)?
            var index = start
            while index < bytes.count, let child = children[node][bytes[index]] {
                node = Int(child)
                index += 1
                let found = terminal[node]
                if found >= 0 { best = (index, entries[Int(found)]) }
            }
            return best
        }
    }

    // MARK: - BPE model

    /// Scratch arrays reused across the pre-tokens of one `encode` call.
    fileprivate struct BPEWorkspace {
        var symbols: [Int32] = []
        var next: [Int32] = []
        var previous: [Int32] = []
        /// Candidate merges as rank << 32 | position: a min-heap pops the best-ranked merge, the
        /// leftmost among equals, as `tokenizers` does.
        var heap: [UInt64] = []
        var key: [UInt8] = []

        mutating func push(_ value: UInt64) {
            heap.append(value)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[parent] > value else { break }
                heap[child] = heap[parent]
                child = parent
            }
            heap[child] = value
        }

        mutating func pop() -> UInt64? {
            guard let last = heap.popLast() else { return nil }
            guard let top = heap.first else { return last }
            let count = heap.count
            var parent = 0
            while true {
                let left = 2 * parent + 1
                guard left < count else { break }
                let right = left + 1
                let smaller = right < count && heap[right] < heap[left] ? right : left
                guard heap[smaller] < last else { break }
                heap[parent] = heap[smaller]
                parent = smaller
            }
            heap[parent] = last
            return top
        }
    }

    /// Byte-pair encoding over token ids: a pre-token starts as one symbol per character (or byte
    /// tokens, or the unknown token), and the best-ranked adjacent pair is merged until none is left.
    fileprivate struct BPEModel: Sendable {
        /// (left id << 32 | right id) → (rank << 32 | merged id).
        private let merges: [UInt64: UInt64]
        /// Ids of one-character tokens: below U+0800 by table, the rest by dictionary.
        private let smallScalarIDs: [Int32]
        private let scalarIDs: [UInt32: Int32]
        /// Ids of the characters GPT-2's table spells each byte with.
        private let byteLevelIDs: [Int32]
        /// `<0x00>`…`<0xFF>` ids when `byte_fallback` is on (-1 where the vocabulary lacks one).
        private let fallbackIDs: [Int32]?
        private let unknownID: Int32?
        private let fusesUnknown: Bool
        /// The whole vocabulary, kept only for `ignore_merges`.
        private let vocab: [TokenKey: Int32]
        private let ignoresMerges: Bool

        init(_ object: [String: Any], vocab: [TokenKey: Int32], _ reader: FileReader) throws {
            for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
                if let affix = object[field], !reader.isAbsent(affix), try !reader.string(affix, "model.\(field)").isEmpty {
                    throw reader.fail("model.\(field) is not supported (only BPE without word affixes is)")
                }
            }
            // `dropout` is ignored: it skips merges at random, which only training wants, and served
            // models' files have it null.
            merges = try Self.readMerges(try reader.array(object["merges"], "model.merges"), vocab: vocab, reader)

            var small = [Int32](repeating: -1, count: 0x800)
            var large: [UInt32: Int32] = [:]
            for (key, id) in vocab where !key.bytes.isEmpty && key.bytes.count <= 4 && utf8Length(leading: key.bytes[0]) == key.bytes.count {
                let bytes = key.bytes
                let value = scalar(in: bytes, at: 0).value
                if value < 0x800 { small[Int(value)] = id } else { large[value] = id }
            }
            smallScalarIDs = small
            scalarIDs = large
            byteLevelIDs = ByteLevel.scalars.map { small[Int($0)] }

            if try reader.bool(object["byte_fallback"], "model.byte_fallback", default: false) {
                fallbackIDs = (0..<256).map { byte in
                    vocab[TokenKey(String(format: "<0x%02X>", byte))] ?? -1
                }
            } else {
                fallbackIDs = nil
            }
            if let unknown = object["unk_token"], !reader.isAbsent(unknown) {
                // `tokenizers` fails an encode that needs an unknown token missing from the vocabulary;
                // here such a character is dropped instead.
                unknownID = vocab[TokenKey(try reader.string(unknown, "model.unk_token"))]
            } else {
                unknownID = nil
            }
            fusesUnknown = try reader.bool(object["fuse_unk"], "model.fuse_unk", default: false)
            ignoresMerges = try reader.bool(object["ignore_merges"], "model.ignore_merges", default: false)
            self.vocab = ignoresMerges ? vocab : [:]
        }

        /// Merges as `"a b"` lines (`#version` lines are skipped) or `["a", "b"]` pairs; the rank is
        /// the position, and a pair listed twice keeps its later rank, as in `tokenizers`.
        private static func readMerges(_ list: [Any], vocab: [TokenKey: Int32], _ reader: FileReader) throws -> [UInt64: UInt64] {
            var merges: [UInt64: UInt64] = [:]
            merges.reserveCapacity(list.count)
            var rank: UInt64 = 0
            let space = UInt8(ascii: " ")
            for (index, element) in list.enumerated() {
                let path = "model.merges[\(index)]"
                let left: [UInt8]
                let right: [UInt8]
                if let line = element as? String {
                    let bytes = Array(line.utf8)
                    if bytes.starts(with: Array("#version".utf8)) { continue }
                    let parts = bytes.split(separator: space, omittingEmptySubsequences: false)
                    guard parts.count == 2 else { throw reader.fail("\(path) \(quoted(line)) is not two tokens separated by one space") }
                    left = Array(parts[0])
                    right = Array(parts[1])
                } else if let pair = element as? [Any], pair.count == 2, let first = pair[0] as? String, let second = pair[1] as? String {
                    left = Array(first.utf8)
                    right = Array(second.utf8)
                } else {
                    throw reader.fail("\(path) is neither \"a b\" nor [\"a\", \"b\"]")
                }
                guard let leftID = vocab[TokenKey(left)], let rightID = vocab[TokenKey(right)], let mergedID = vocab[TokenKey(left + right)] else {
                    let shown = String(decoding: left, as: UTF8.self) + " " + String(decoding: right, as: UTF8.self)
                    throw reader.fail("\(path) \(quoted(shown)) uses a token missing from model.vocab")
                }
                merges[pairKey(leftID, rightID)] = rank << 32 | UInt64(UInt32(bitPattern: mergedID))
                rank += 1
            }
            return merges
        }

        /// The rank half of a merge entry (and of a heap candidate).
        private static let rankMask: UInt64 = 0xFFFF_FFFF_0000_0000

        private static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
            UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        }

        func encode(_ piece: Piece, into ids: inout [Int], workspace: inout BPEWorkspace) {
            guard !piece.bytes.isEmpty else { return }
            if ignoresMerges {
                // Llama 3: a pre-token that is itself a token is emitted whole.
                workspace.key.removeAll(keepingCapacity: true)
                if piece.isByteLevel {
                    for byte in piece.bytes { workspace.key.append(contentsOf: ByteLevel.utf8[Int(byte)]) }
                } else {
                    workspace.key.append(contentsOf: piece.bytes)
                }
                if let id = vocab[TokenKey(workspace.key)] {
                    ids.append(Int(id))
                    return
                }
            }
            workspace.symbols.removeAll(keepingCapacity: true)
            var pendingUnknown = false
            if piece.isByteLevel {
                for byte in piece.bytes {
                    let id = byteLevelIDs[Int(byte)]
                    if id >= 0 {
                        flushUnknown(&pendingUnknown, into: &workspace.symbols)
                        workspace.symbols.append(id)
                    } else {
                        addUnknownCharacter(ByteLevel.utf8[Int(byte)][...], pending: &pendingUnknown, into: &workspace.symbols)
                    }
                }
            } else {
                var index = 0
                let bytes = piece.bytes
                while index < bytes.count {
                    let (value, length) = scalar(in: bytes, at: index)
                    let id = value < 0x800 ? smallScalarIDs[Int(value)] : scalarIDs[value] ?? -1
                    if id >= 0 {
                        flushUnknown(&pendingUnknown, into: &workspace.symbols)
                        workspace.symbols.append(id)
                    } else {
                        addUnknownCharacter(bytes[index..<(index + length)], pending: &pendingUnknown, into: &workspace.symbols)
                    }
                    index += length
                }
            }
            flushUnknown(&pendingUnknown, into: &workspace.symbols)
            merge(&workspace, into: &ids)
        }

        private func flushUnknown(_ pending: inout Bool, into symbols: inout [Int32]) {
            guard pending, let unknownID else { return }
            symbols.append(unknownID)
            pending = false
        }

        /// A character outside the vocabulary: its UTF-8 as byte tokens when the file falls back to
        /// bytes, else the unknown token (one per run of unknown characters with `fuse_unk`), else
        /// nothing, as in `tokenizers`.
        private func addUnknownCharacter(_ bytes: ArraySlice<UInt8>, pending: inout Bool, into symbols: inout [Int32]) {
            if let fallbackIDs, bytes.allSatisfy({ fallbackIDs[Int($0)] >= 0 }) {
                for byte in bytes { symbols.append(fallbackIDs[Int(byte)]) }
                return
            }
            guard unknownID != nil else { return }
            if pending && !fusesUnknown { flushUnknown(&pending, into: &symbols) }
            pending = true
        }

        /// Merges the workspace's symbols and appends the result.
        private func merge(_ workspace: inout BPEWorkspace, into ids: inout [Int]) {
            let count = workspace.symbols.count
            if count < 2 || count >= Int(Int32.max) {
                for symbol in workspace.symbols { ids.append(Int(symbol)) }
                return
            }
            if count == 2 {
                if let merged = merges[Self.pairKey(workspace.symbols[0], workspace.symbols[1])] {
                    ids.append(Int(UInt32(truncatingIfNeeded: merged)))
                } else {
                    ids.append(Int(workspace.symbols[0]))
                    ids.append(Int(workspace.symbols[1]))
                }
                return
            }
            workspace.next.removeAll(keepingCapacity: true)
            workspace.previous.removeAll(keepingCapacity: true)
            workspace.heap.removeAll(keepingCapacity: true)
            for index in 0..<count {
                workspace.next.append(index + 1 < count ? Int32(index + 1) : -1)
                workspace.previous.append(Int32(index - 1))
            }
            for index in 0..<(count - 1) {
                if let merged = merges[Self.pairKey(workspace.symbols[index], workspace.symbols[index + 1])] {
                    workspace.push(merged & Self.rankMask | UInt64(index))
                }
            }
            while let candidate = workspace.pop() {
                let position = Int(UInt32(truncatingIfNeeded: candidate))
                let left = workspace.symbols[position]
                let nextPosition = Int(workspace.next[position])
                // A merged-away symbol, or a pair that changed since the candidate was queued.
                guard left >= 0, nextPosition >= 0,
                      let merged = merges[Self.pairKey(left, workspace.symbols[nextPosition])], merged & Self.rankMask == candidate & Self.rankMask
                else { continue }
                let mergedID = Int32(bitPattern: UInt32(truncatingIfNeeded: merged))
                workspace.symbols[position] = mergedID
                workspace.symbols[nextPosition] = -1
                let after = workspace.next[nextPosition]
                workspace.next[position] = after
                if after >= 0 { workspace.previous[Int(after)] = Int32(position) }
                let before = workspace.previous[position]
                if before >= 0, let pair = merges[Self.pairKey(workspace.symbols[Int(before)], mergedID)] {
                    workspace.push(pair & Self.rankMask | UInt64(before))
                }
                if after >= 0, let pair = merges[Self.pairKey(mergedID, workspace.symbols[Int(after)])] {
                    workspace.push(pair & Self.rankMask | UInt64(position))
                }
            }
            var position = 0
            while position >= 0 {
                ids.append(Int(workspace.symbols[position]))
                position = Int(workspace.next[position])
            }
        }
    }
}

extension HuggingFaceTokenizer: TextTokenizer {
    public var bosID: Int? { addsBOS ? bosTokenID : nil }
    /// Checked present by `EngineSetup` before a server uses the tokenizer.
    public var eosID: Int { eosTokenID ?? 0 }
    public func decode(_ ids: [Int]) -> String { decode(ids, skipSpecialTokens: true) }
}

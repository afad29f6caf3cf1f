/// What a server needs of a tokenizer: text to ids and back, the special tokens, and the
/// tokens it may write when it makes text up. The built-in `Tokenizer` approximates any model;
/// `HuggingFaceTokenizer` is a model's own, read from its tokenizer.json.
public protocol TextTokenizer: Sendable {
    /// The id a prompt starts with when special tokens are added, if the tokenizer adds one.
    var bosID: Int? { get }
    /// The id the model ends its answer with.
    var eosID: Int { get }
    /// Largest id used, plus one.
    var vocabularySize: Int { get }
    func encode(_ text: String, addSpecialTokens: Bool) -> [Int]
    /// Text for ids, special tokens skipped (vLLM's `skip_special_tokens`).
    func decode(_ ids: [Int]) -> String
    /// The bytes one token adds to the text (none for special tokens).
    func bytes(of id: Int) -> [UInt8]
    /// The token as `return_token_strs` and logprobs show it.
    func tokenString(_ id: Int) -> String
    /// Word-like tokens generated text is drawn from.
    var textTokenIDs: [Int] { get }
    /// Punctuation tokens generated text may use.
    var punctuationIDs: [Int] { get }
}

/// A deterministic, reversible stand-in for a model's BPE tokenizer. No tokenizer file is read:
/// the vocabulary is built here, sized to give roughly the token counts a Llama tokenizer gives
/// for English (a common word is one token, a rare one two or three, other bytes one each).
///
/// Ids: 0–255 are raw bytes, 256/257 are BOS/EOS, then common words (with and without a leading
/// space, lower-case and capitalised), then lower-case letter chunks of one to three letters.
/// Every id decodes to bytes, and `decode(encode(text)) == text` for any valid UTF-8 text.
public struct Tokenizer: TextTokenizer {
    public static let bosTokenID: Int = 256
    public static let eosTokenID: Int = 257
    static let firstWordID = 258

    /// Largest id this vocabulary uses, plus one.
    public let vocabularySize: Int
    private let pieces: [[UInt8]]
    private let wordIDs: [String: Int]
    private let chunkBase: Int
    /// Ids of the words with a leading space, used to write generated text.
    public let spacedWordIDs: [Int]
    public var textTokenIDs: [Int] { spacedWordIDs }
    public var bosID: Int? { Self.bosTokenID }
    public var eosID: Int { Self.eosTokenID }
    /// Punctuation ids that may appear in generated text.
    public let punctuationIDs: [Int]

    /// The shared instance; building it takes about a millisecond.
    public static let shared = Tokenizer()

    public init() {
        var pieces: [[UInt8]] = (0..<256).map { [UInt8($0)] }
        pieces.append(Array("<s>".utf8))
        pieces.append(Array("</s>".utf8))
        var wordIDs: [String: Int] = [:]
        var spaced: [Int] = []
        for word in Self.commonWords {
            let capitalised = word.prefix(1).uppercased() + word.dropFirst()
            for form in [" " + word, word, " " + capitalised, capitalised] where wordIDs[form] == nil {
                wordIDs[form] = pieces.count
                if form == " " + word { spaced.append(pieces.count) }
                pieces.append(Array(form.utf8))
            }
        }
        let chunkBase = pieces.count
        let letters = Array("abcdefghijklmnopqrstuvwxyz".utf8)
        for length in 1...3 {
            var indices = Array(repeating: 0, count: length)
            while true {
                pieces.append(indices.map { letters[$0] })
                var position = length - 1
                while position >= 0 {
                    indices[position] += 1
                    if indices[position] < letters.count { break }
                    indices[position] = 0
                    position -= 1
                }
                if position < 0 { break }
            }
        }
        self.pieces = pieces
        self.wordIDs = wordIDs
        self.chunkBase = chunkBase
        self.vocabularySize = pieces.count
        self.spacedWordIDs = spaced
        self.punctuationIDs = [Int(UInt8(ascii: ".")), Int(UInt8(ascii: ",")), Int(UInt8(ascii: "\n"))]
    }

    /// Token ids for `text`. With `addSpecialTokens`, a BOS token comes first, as Llama's does.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        var ids: [Int] = addSpecialTokens ? [Self.bosTokenID] : []
        ids.reserveCapacity(text.utf8.count / 3 + 2)
        let bytes = Array(text.utf8)
        var index = 0
        while index < bytes.count {
            let hasSpace = bytes[index] == UInt8(ascii: " ")
            let wordStart = hasSpace ? index + 1 : index
            var wordEnd = wordStart
            while wordEnd < bytes.count, Self.isLetter(bytes[wordEnd]) { wordEnd += 1 }
            if wordEnd > wordStart {
                let word = String(decoding: bytes[index..<wordEnd], as: UTF8.self)
                if let id = wordIDs[word] {
                    ids.append(id)
                } else {
                    if hasSpace { ids.append(Int(UInt8(ascii: " "))) }
                    appendChunks(bytes[wordStart..<wordEnd], to: &ids)
                }
                index = wordEnd
            } else {
                ids.append(Int(bytes[index]))
                index += 1
            }
        }
        return ids
    }

    private func appendChunks(_ letters: ArraySlice<UInt8>, to ids: inout [Int]) {
        var start = letters.startIndex
        while start < letters.endIndex {
            let end = min(start + 3, letters.endIndex)
            let chunk = letters[start..<end]
            if chunk.allSatisfy({ $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }) {
                ids.append(chunkID(chunk))
            } else {
                ids.append(contentsOf: chunk.map { Int($0) })
            }
            start = end
        }
    }

    private func chunkID(_ chunk: ArraySlice<UInt8>) -> Int {
        // Chunks of length n start after all chunks of lengths < n: 26 + 26² + ….
        var offset = 0
        var block = 26
        for _ in 1..<chunk.count {
            offset += block
            block *= 26
        }
        var value = 0
        for byte in chunk { value = value * 26 + Int(byte - UInt8(ascii: "a")) }
        return chunkBase + offset + value
    }

    /// The bytes of one token id; ids outside the vocabulary decode to nothing.
    public func bytes(of id: Int) -> [UInt8] {
        guard id >= 0, id < pieces.count, id != Self.bosTokenID, id != Self.eosTokenID else { return [] }
        return pieces[id]
    }

    /// The token's text as `return_token_strs` shows it.
    public func tokenString(_ id: Int) -> String {
        guard id >= 0, id < pieces.count else { return "" }
        return String(decoding: pieces[id], as: UTF8.self)
    }

    public func decode(_ ids: [Int]) -> String { decode(ids[...]) }

    /// Text for token ids; special tokens are skipped, as vLLM's `skip_special_tokens` does.
    public func decode(_ ids: some Sequence<Int>) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.underestimatedCount * 6)
        for id in ids where id >= 0 && id < pieces.count && id != Self.bosTokenID && id != Self.eosTokenID {
            bytes.append(contentsOf: pieces[id])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
    }

    /// Common English words; each is one token in its four forms.
    static let commonWords: [String] = """
    the of and to in a is that for it as was with be by on not he i this are or his from at which \
    but have an they you were her she there been one all we their has would when if so no what up \
    out can who more will them some could into him time only than other its then two first may new \
    these any my now such like our over man me even most made after also did many before must through \
    back years where much your way well down should because each just those people how too little state \
    good very make world still own see men work long get here between both life being under never day \
    same another know while last might us great old year off come since against go came right used take \
    three small large next early young important few public bad able system model request server token \
    cache memory batch queue latency throughput gateway cluster node pod service network data value result \
    answer question example number point part place case group problem fact hand high small different \
    following without again further once during always often sometimes usually every however therefore \
    thus although whether though until within along across around above below near far away together \
    open close start stop run load read write send receive find give tell ask show try call keep let \
    begin seem help talk turn move live believe bring happen provide sit stand lose pay meet include \
    continue set learn change lead understand watch follow create speak allow add spend grow offer \
    remember love consider appear buy wait serve die build stay fall cut reach kill remain suggest raise \
    pass sell require report decide pull light water air sound word line name home thing story fire
    """.split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)
}

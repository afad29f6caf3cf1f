import Foundation
import InferenceAPI

/// What one sequence will say, decided when it arrives: deterministic for a seed, its length
/// drawn from the model's output-length distribution (or exactly max_tokens with ignore_eos),
/// cut at a stop string or stop token as vLLM's detokenizer would.
struct OutputPlan {
    var tokens: [Int]
    /// UTF-8 of the whole output text (stop string excluded).
    var text: [UInt8]
    /// `textEnds[i]`: bytes of `text` visible once token i has been emitted. Streams send the
    /// difference between consecutive ends, so every delta is a prefix-consistent slice.
    var textEnds: [Int]
    var finishReason: FinishReason
    /// vLLM's `stop_reason`: the matched stop string or token id; nil for EOS or length.
    var stopReason: JSONValue?
    /// Bytes a stream holds back until the end, so a stop string split over tokens is never
    /// sent in part (vLLM's `output_text_buffer_length`: the longest stop string minus one).
    let streamHoldback: Int
    /// Seeds the made-up log probabilities, so they repeat with the output.
    private let logprobSeed: UInt64

    struct Limits {
        var maxTokens: Int
        var minTokens: Int
        var ignoreEOS: Bool
        var stop: StopStrings
        var stopTokenIDs: Set<Int>
        var includeStopStringInOutput = false
    }

    /// `script`: the tokens a constraint dictates (structured output, tool calls); EOS follows
    /// them, and sampled words any tokens past them.
    init(
        limits: Limits, lengthDistribution: ModelProfile.OutputLength, generator: inout SplitMix64, tokenizer: any TextTokenizer,
        script: [Int]? = nil
    ) {
        logprobSeed = generator.next()
        streamHoldback = limits.includeStopStringInOutput ? 0 : max(0, limits.stop.longest - 1)
        // Where the model emits EOS, unless ignore_eos: drawn from the model's length
        // distribution, never before min_tokens (vLLM masks EOS until then). EOS counts as a
        // generated token and adds no text. vLLM tests max_tokens before EOS, so EOS as the
        // max_tokens-th token still finishes "length"; it is drawn only before that.
        var eosIndex: Int?
        if let script, !limits.ignoreEOS {
            // The grammar allows only EOS once the script is done.
            let atLeast = max(limits.minTokens, script.count)
            if atLeast < limits.maxTokens - 1 { eosIndex = atLeast }
        } else if !limits.ignoreEOS {
            let drawn = generator.nextLogNormal(median: lengthDistribution.median, sigma: lengthDistribution.sigma)
            let position = drawn.isFinite ? Int(min(drawn, Double(limits.maxTokens)).rounded()) : limits.maxTokens
            let atLeast = max(limits.minTokens, position)
            if atLeast < limits.maxTokens - 1 { eosIndex = atLeast }
        }
        let length = eosIndex.map { $0 + 1 } ?? limits.maxTokens
        tokens = []
        tokens.reserveCapacity(length)
        text = []
        textEnds = []
        textEnds.reserveCapacity(length)
        stopReason = nil
        var reason = FinishReason.length
        let words = tokenizer.textTokenIDs
        let punctuation = tokenizer.punctuationIDs
        for index in 0..<length {
            if index == eosIndex {
                tokens.append(tokenizer.eosID)
                textEnds.append(text.count)
                reason = .stop
                break
            }
            let id: Int
            if let script, index < script.count {
                id = script[index]
            } else {
                id = Self.drawToken(at: index, words: words, punctuation: punctuation, limits: limits, generator: &generator)
            }
            let bytes = tokenizer.bytes(of: id)
            tokens.append(id)
            text.append(contentsOf: bytes)
            textEnds.append(text.count)
            // Stops apply once the output is longer than min_tokens, as in vLLM; a stop token
            // that is also the max_tokens-th token finishes "length" (vLLM checks that first).
            guard index + 1 > limits.minTokens else { continue }
            if index + 1 < limits.maxTokens, limits.stopTokenIDs.contains(id) {
                // A stop token counts as generated; the detokenizer leaves its text out.
                if !limits.includeStopStringInOutput {
                    text.removeLast(bytes.count)
                    textEnds[index] = text.count
                }
                reason = .stop
                stopReason = .integer(id)
                break
            }
            if let cut = Self.stopMatch(limits.stop, in: text, newBytes: bytes.count) {
                reason = .stop
                stopReason = .string(cut.stop)
                let end = limits.includeStopStringInOutput ? cut.at + cut.stop.utf8.count : cut.at
                text.removeSubrange(end...)
                textEnds = textEnds.map { min($0, end) }
                break
            }
        }
        finishReason = reason
    }

    /// A made-up token: mostly a word, now and then punctuation. Stop tokens are masked until
    /// min_tokens, like EOS, with a bounded number of draws (a stop list that covers every word
    /// must not spin forever).
    private static func drawToken(at index: Int, words: [Int], punctuation: [Int], limits: Limits, generator: inout SplitMix64) -> Int {
        var id: Int
        var draws = 0
        repeat {
            draws += 1
            let roll = generator.next()
            if index > 0, roll % 13 == 0, !punctuation.isEmpty {
                id = punctuation[Int((roll >> 8) % UInt64(punctuation.count))]
            } else {
                id = words[Int((roll >> 16) % UInt64(words.count))]
            }
        } while index < limits.minTokens && draws < 64 && limits.stopTokenIDs.contains(id)
        return id
    }

    /// Bytes of `text` a stream may show once token `index` is out: everything at the end,
    /// otherwise all but the held-back tail.
    /// How a sequence that ended after `emitted` of its tokens finished: as planned, unless it
    /// was aborted or the engine ended it first (V0 ignores a prompt that can never fit its KV
    /// cache: "length", with nothing said).
    func finish(engine reason: FinishReason, emitted: Int) -> FinishReason {
        reason == .abort ? .abort : (emitted < tokens.count ? reason : finishReason)
    }

    /// vLLM's `stop_reason` for a sequence that finished so: the plan's only if it ended as planned.
    func stopReason(finished: FinishReason?) -> JSONValue? {
        finished == finishReason ? stopReason : nil
    }

    func visibleEnd(after index: Int, finished: Bool, shownBefore: Int) -> Int {
        guard index >= 0 else { return 0 }
        if finished { return textEnds[textEnds.count - 1] }
        return max(shownBefore, min(textEnds[index] - streamHoldback, textEnds[textEnds.count - 1]))
    }

    /// The first stop string, in the request's order, that ends within the bytes just added
    /// (vLLM's detokenizer checks them in order and takes the first that matches).
    private static func stopMatch(_ stops: StopStrings, in text: [UInt8], newBytes: Int) -> (stop: String, at: Int)? {
        for (stop, needle) in zip(stops.strings, stops.bytes) where !needle.isEmpty {
            guard text.count >= needle.count else { continue }
            var start = max(0, text.count - newBytes - needle.count + 1)
            while start + needle.count <= text.count {
                if text[start..<(start + needle.count)].elementsEqual(needle) { return (stop, start) }
                start += 1
            }
        }
        return nil
    }

    /// The sampled token of position `index` and `count − 1` alternatives, most likely first,
    /// with log probabilities that are made up but consistent: the sampled token is always the
    /// most likely, and the probabilities sum to less than one.
    func topLogprobs(at index: Int, count: Int, tokenizer: any TextTokenizer) -> [(token: Int, logprob: Double)] {
        var generator = SplitMix64(seed: logprobSeed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        let sampledProbability = 0.35 + 0.64 * (1 - generator.nextUnit())
        var entries = [(token: tokens[index], logprob: Foundation.log(sampledProbability))]
        var remaining = 1 - sampledProbability
        let words = tokenizer.textTokenIDs
        // A small vocabulary may have fewer distinct alternatives than asked for.
        var draws = 0
        while entries.count < max(count, 1), !words.isEmpty, draws < 64 * max(count, 1) {
            draws += 1
            let alternative = words[Int(generator.next() % UInt64(words.count))]
            if entries.contains(where: { $0.token == alternative }) { continue }
            remaining /= 2
            entries.append((alternative, Foundation.log(remaining)))
        }
        return entries
    }
}

/// A request's stop strings with their UTF-8 bytes, made once per request rather than once per
/// generated token and stop string.
struct StopStrings {
    let strings: [String]
    let bytes: [[UInt8]]
    /// The longest, in bytes.
    let longest: Int

    init(_ strings: [String]) {
        self.strings = strings
        bytes = strings.map { Array($0.utf8) }
        longest = bytes.map(\.count).max() ?? 0
    }
}

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
    /// Seeds the made-up log probabilities, so they repeat with the output.
    private let logprobSeed: UInt64

    struct Limits {
        var maxTokens: Int
        var minTokens: Int
        var ignoreEOS: Bool
        var stop: [String]
        var stopTokenIDs: [Int]
    }

    init(limits: Limits, lengthDistribution: ModelProfile.OutputLength, generator: inout SplitMix64, tokenizer: Tokenizer) {
        logprobSeed = generator.next()
        // Where the model emits EOS, unless ignore_eos: drawn from the model's length
        // distribution, never before min_tokens (vLLM masks EOS until then). EOS counts as a
        // generated token and adds no text.
        var eosIndex: Int?
        if !limits.ignoreEOS {
            let drawn = generator.nextLogNormal(median: lengthDistribution.median, sigma: lengthDistribution.sigma)
            let position = drawn.isFinite ? Int(min(drawn, Double(limits.maxTokens)).rounded()) : limits.maxTokens
            let atLeast = max(limits.minTokens, position)
            if atLeast < limits.maxTokens { eosIndex = atLeast }
        }
        let length = eosIndex.map { $0 + 1 } ?? limits.maxTokens
        tokens = []
        tokens.reserveCapacity(length)
        text = []
        textEnds = []
        textEnds.reserveCapacity(length)
        stopReason = nil
        var reason = FinishReason.length
        let words = tokenizer.spacedWordIDs
        for index in 0..<length {
            if index == eosIndex {
                tokens.append(Tokenizer.eosTokenID)
                textEnds.append(text.count)
                reason = .stop
                break
            }
            let roll = generator.next()
            let id: Int
            if index > 0, roll % 13 == 0 {
                id = tokenizer.punctuationIDs[Int((roll >> 8) % UInt64(tokenizer.punctuationIDs.count))]
            } else {
                id = words[Int((roll >> 16) % UInt64(words.count))]
            }
            let bytes = tokenizer.bytes(of: id)
            tokens.append(id)
            text.append(contentsOf: bytes)
            textEnds.append(text.count)
            // Stops apply once the output is longer than min_tokens, as in vLLM.
            guard index + 1 > limits.minTokens else { continue }
            if limits.stopTokenIDs.contains(id) {
                // A stop token counts as generated; the detokenizer leaves its text out.
                text.removeLast(bytes.count)
                textEnds[index] = text.count
                reason = .stop
                stopReason = .integer(id)
                break
            }
            if let cut = Self.stopMatch(limits.stop, in: text, newBytes: bytes.count) {
                reason = .stop
                stopReason = .string(cut.stop)
                text.removeSubrange(cut.at...)
                textEnds = textEnds.map { min($0, cut.at) }
                break
            }
        }
        finishReason = reason
    }

    /// The earliest stop string ending within the bytes just added.
    private static func stopMatch(_ stops: [String], in text: [UInt8], newBytes: Int) -> (stop: String, at: Int)? {
        var best: (stop: String, at: Int)?
        for stop in stops where !stop.isEmpty {
            let needle = Array(stop.utf8)
            let searchFrom = max(0, text.count - newBytes - needle.count + 1)
            guard text.count >= needle.count else { continue }
            var start = searchFrom
            while start + needle.count <= text.count {
                if text[start..<(start + needle.count)].elementsEqual(needle) {
                    if best == nil || start < best!.at { best = (stop, start) }
                    break
                }
                start += 1
            }
        }
        return best
    }

    /// The sampled token of position `index` and `count − 1` alternatives, most likely first,
    /// with log probabilities that are made up but consistent: the sampled token is always the
    /// most likely, and the probabilities sum to less than one.
    func topLogprobs(at index: Int, count: Int, tokenizer: Tokenizer) -> [(token: Int, logprob: Double)] {
        var generator = SplitMix64(seed: logprobSeed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
        let sampledProbability = 0.35 + 0.64 * (1 - generator.nextUnit())
        var entries = [(token: tokens[index], logprob: Foundation.log(sampledProbability))]
        var remaining = 1 - sampledProbability
        let words = tokenizer.spacedWordIDs
        while entries.count < max(count, 1) {
            remaining /= 2
            var alternative = words[Int(generator.next() % UInt64(words.count))]
            while entries.contains(where: { $0.token == alternative }) { alternative = words[Int(generator.next() % UInt64(words.count))] }
            entries.append((alternative, Foundation.log(remaining)))
        }
        return entries
    }
}

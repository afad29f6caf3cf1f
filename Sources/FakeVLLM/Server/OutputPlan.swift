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
        var length = limits.maxTokens
        var reason = FinishReason.length
        if !limits.ignoreEOS {
            let drawn = generator.nextLogNormal(median: lengthDistribution.median, sigma: lengthDistribution.sigma)
            let eosAt = max(1, max(limits.minTokens, Int(drawn.rounded())))
            if eosAt < limits.maxTokens {
                length = eosAt
                reason = .stop
            }
        }
        tokens = []
        tokens.reserveCapacity(length)
        text = []
        textEnds = []
        textEnds.reserveCapacity(length)
        stopReason = nil
        let words = tokenizer.spacedWordIDs
        for index in 0..<length {
            let roll = generator.next()
            let id: Int
            if index > 0, roll % 13 == 0 {
                id = tokenizer.punctuationIDs[Int((roll >> 8) % UInt64(tokenizer.punctuationIDs.count))]
            } else {
                id = words[Int((roll >> 16) % UInt64(words.count))]
            }
            tokens.append(id)
            text.append(contentsOf: tokenizer.bytes(of: id))
            textEnds.append(text.count)
            if index + 1 >= limits.minTokens {
                if limits.stopTokenIDs.contains(id) {
                    reason = .stop
                    stopReason = .integer(id)
                    break
                }
                if let cut = Self.stopMatch(limits.stop, in: text, newBytes: tokenizer.bytes(of: id).count) {
                    reason = .stop
                    stopReason = .string(cut.stop)
                    text.removeSubrange(cut.at...)
                    textEnds = textEnds.map { min($0, cut.at) }
                    break
                }
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

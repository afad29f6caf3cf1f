import Foundation
import InferenceAPI
import Yams

/// A family of dense decoder models that share a vocabulary and a context length, with the real
/// architecture of each published size, read from `profiles/model-families/NAME.yaml`. A
/// `--model` that no profile names is matched to a family by its name, so that
/// `understudy serve Qwen/Qwen3-32B` starts as `vllm serve` would, with a warning saying what
/// was assumed.
public struct ModelFamily: Codable, Sendable, Equatable {
    public var name: String
    /// Lower-case fragments of a model name that mean this family ("qwen3"); the longest
    /// fragment found in a name over all families wins, so "qwen2.5" beats "qwen2".
    public var match: [String]
    public var vocab: Int
    public var maxModelLen: Int
    public var dtypeBytes: Int
    public var outputLength: ModelProfile.OutputLength
    public var sizes: [Size]

    /// One published size's architecture.
    public struct Size: Codable, Sendable, Equatable {
        /// Parameters as the model's name states them, in billions.
        public var billions: Double
        public var layers: Int
        public var hidden: Int
        public var heads: Int
        public var kvHeads: Int
        public var headDim: Int
        public var intermediate: Int
        public var tiedEmbeddings: Bool?
        /// When this size's vocabulary differs from the family's.
        public var vocab: Int?
    }
}

/// A model profile made up for a model no profile names, and what was assumed to make it.
public struct DerivedModelProfile: Sendable {
    public var profile: ModelProfile
    /// One line for the user: where the numbers came from and what was guessed.
    public var assumption: String
}

extension ProfileStore {
    public func modelFamilyNames() throws -> [String] {
        let directory = root.appendingPathComponent("model-families")
        guard FileManager.default.fileExists(atPath: directory.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".yaml") }.map { String($0.dropLast(5)) }.sorted()
    }

    public func modelFamily(_ name: String) throws -> ModelFamily {
        let file = root.appendingPathComponent("model-families").appendingPathComponent(name + ".yaml")
        let text = try Self.read(file) { ProfileError("no model family '\(name)'") }
        do {
            return try YAMLDecoder().decode(ModelFamily.self, from: text)
        } catch {
            throw ProfileError("\(file.path): \(error)")
        }
    }

    /// A profile for a `--model` that names no profile: from its `config.json` when it is a local
    /// directory (as vLLM reads it), else from its name's family and parameter count. Nil when
    /// neither says enough.
    public func derivedModel(for modelID: String) throws -> DerivedModelProfile? {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: modelID, isDirectory: &isDirectory), isDirectory.boolValue {
            let config = URL(fileURLWithPath: modelID).appendingPathComponent("config.json")
            guard let data = FileManager.default.contents(atPath: config.path) else {
                throw ProfileError("\(modelID) is a directory without a config.json; vLLM needs one to load a local model")
            }
            return try ModelProfile.fromHuggingFaceConfig(data, modelID: modelID, file: config.path)
        }
        let families = try modelFamilyNames().map(modelFamily)
        return ModelProfile.fromName(modelID, families: families)
    }
}

extension ModelProfile {
    /// The architecture a Hugging Face `config.json` states. Multimodal configs carry the
    /// language model's numbers in `text_config`; mixture-of-experts models are refused, since
    /// their cost depends on routing the emulator does not model.
    public static func fromHuggingFaceConfig(_ data: Data, modelID: String, file: String) throws -> DerivedModelProfile {
        let parsed: JSONValue
        do {
            parsed = try JSONValue.parse(String(decoding: data, as: UTF8.self))
        } catch {
            throw ProfileError("\(file): not JSON (\(error))")
        }
        let config = parsed["text_config"].flatMap { $0.typeName == "object" ? $0 : nil } ?? parsed
        func integer(_ key: String) -> Int? {
            switch config[key] ?? parsed[key] {
            case .integer(let value)?: value
            case .double(let value)? where value.isFinite && value == value.rounded() && abs(value) < 1e12: Int(value)
            default: nil
            }
        }
        func required(_ key: String) throws -> Int {
            guard let value = integer(key), value > 0, value <= 10_000_000 else {
                throw ProfileError("\(file): \(key) is missing or not a positive integer")
            }
            return value
        }
        for expertKey in ["num_experts", "num_local_experts", "n_routed_experts"] where (integer(expertKey) ?? 0) > 1 {
            throw ProfileError("\(file): \(expertKey) says this is a mixture-of-experts model, which the emulator's cost model does not cover; name a dense model profile with --model-profile")
        }
        let layers = try required("num_hidden_layers")
        let hidden = try required("hidden_size")
        let heads = try required("num_attention_heads")
        let kvHeads = integer("num_key_value_heads").flatMap { $0 > 0 ? $0 : nil } ?? heads
        let headDim = integer("head_dim").flatMap { $0 > 0 ? $0 : nil } ?? hidden / heads
        guard headDim > 0, heads % kvHeads == 0, headDim <= 4096, kvHeads <= heads else {
            throw ProfileError("\(file): num_attention_heads \(heads), num_key_value_heads \(kvHeads) and head_dim \(headDim) do not fit together")
        }
        let intermediate = try required("intermediate_size")
        let vocab = try required("vocab_size")
        let maxModelLen = integer("max_position_embeddings").flatMap { $0 > 0 ? $0 : nil } ?? 2048
        let dtype = (config["torch_dtype"] ?? parsed["torch_dtype"] ?? config["dtype"] ?? parsed["dtype"])?.string ?? "bfloat16"
        let dtypeBytes = dtype == "float32" ? 4 : 2
        let tied: Bool? = if case .bool(let value)? = config["tie_word_embeddings"] ?? parsed["tie_word_embeddings"] { value } else { nil }
        let name = URL(fileURLWithPath: modelID).lastPathComponent
        let profile = ModelProfile(
            name: name, huggingFaceID: modelID, aliases: nil, layers: layers, hidden: hidden, heads: heads, kvHeads: kvHeads,
            headDim: headDim, intermediate: intermediate, vocab: vocab, maxModelLen: maxModelLen, dtypeBytes: dtypeBytes,
            tiedEmbeddings: tied, outputLength: OutputLength(median: 108.6, sigma: 1.0))
        return DerivedModelProfile(
            profile: profile,
            assumption: "architecture from \(file) (\(layers) layers, hidden \(hidden), \(heads) heads of which \(kvHeads) KV, vocab \(vocab), max_model_len \(maxModelLen), \(dtype)); output lengths assumed as the built-in profiles' (median 108.6 tokens, sigma 1.0)")
    }

    /// A profile for a model known only by name: its family from the name ("Qwen3"), its size
    /// from the parameter count in it ("32B"). A published size of the family is used as it is;
    /// another size keeps the nearest published size's layer shape and scales the layer count.
    public static func fromName(_ modelID: String, families: [ModelFamily]) -> DerivedModelProfile? {
        let base = modelID.split(separator: "/").last.map(String.init) ?? modelID
        let lowered = base.lowercased().replacingOccurrences(of: "_", with: "-")
        guard let billions = parameterBillions(in: lowered) else { return nil }
        var best: (family: ModelFamily, fragment: String)?
        for family in families {
            for fragment in family.match where lowered.contains(fragment) && fragment.count > (best?.fragment.count ?? 0) {
                best = (family, fragment)
            }
        }
        guard let family = best?.family, !family.sizes.isEmpty else { return nil }
        let nearest = family.sizes.min { abs(log($0.billions / billions)) < abs(log($1.billions / billions)) }!
        var profile = ModelProfile(
            name: base, huggingFaceID: modelID, aliases: nil, layers: nearest.layers, hidden: nearest.hidden, heads: nearest.heads,
            kvHeads: nearest.kvHeads, headDim: nearest.headDim, intermediate: nearest.intermediate, vocab: nearest.vocab ?? family.vocab,
            maxModelLen: family.maxModelLen, dtypeBytes: family.dtypeBytes, tiedEmbeddings: nearest.tiedEmbeddings,
            outputLength: family.outputLength)
        let published = abs(nearest.billions - billions) <= 0.05 * billions
        if !published {
            let embeddings = (profile.tiedEmbeddings == true ? 1 : 2) * Double(profile.vocab) * Double(profile.hidden)
            let layers = ((billions * 1e9 - embeddings) / profile.linearParamsPerLayer).rounded()
            profile.layers = Int(min(max(layers, 1), 1000))
        }
        let shape = "\(profile.layers) layers, hidden \(profile.hidden), \(profile.heads) heads of which \(profile.kvHeads) KV, intermediate \(profile.intermediate), vocab \(profile.vocab), max_model_len \(profile.maxModelLen)"
        let how = published
            ? "the \(family.name) family's published \(formatBillions(nearest.billions))B architecture"
            : "the \(family.name) family's \(formatBillions(nearest.billions))B layer shape scaled to \(formatBillions(billions))B parameters"
        return DerivedModelProfile(
            profile: profile,
            assumption: "no model profile names \(modelID); assumed \(how) (\(shape)). Pass a local model directory with its config.json, or --model-profile, for exact numbers")
    }

    /// "32b" in "qwen3-32b-instruct" → 32; the number must stand alone (not "3.2-1b" read as 2-1).
    static func parameterBillions(in name: String) -> Double? {
        let characters = Array(name)
        var index = 0
        while index < characters.count {
            let startsNumber = characters[index].isASCII && characters[index].isNumber
                && (index == 0 || !(characters[index - 1].isNumber || characters[index - 1] == "."))
            guard startsNumber else {
                index += 1
                continue
            }
            var end = index
            while end < characters.count, characters[end].isASCII, characters[end].isNumber || characters[end] == "." { end += 1 }
            let followedByB = end < characters.count && characters[end] == "b"
                && (end + 1 == characters.count || !(characters[end + 1].isLetter || characters[end + 1].isNumber))
            if followedByB, let value = Double(String(characters[index..<end])), value > 0, value < 10_000 { return value }
            index = end
        }
        return nil
    }

    private static func formatBillions(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}

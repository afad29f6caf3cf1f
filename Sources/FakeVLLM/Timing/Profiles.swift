import Foundation
import Yams

/// An accelerator's peaks and the efficiencies the engine reaches on it, read from
/// `profiles/accelerators/NAME.yaml`. Every number there cites its source.
public struct AcceleratorProfile: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    /// With `instant`, every step takes no time (for tests and proxy benchmarks); the memory
    /// numbers still size the KV cache.
    public var instant: Bool?
    /// Device memory as the driver reports it, in MiB (what vLLM multiplies by utilisation).
    public var memoryMiB: Double
    public var memoryBandwidthTBps: Double
    public var bf16TFLOPs: Double
    /// Dense fp8 peak; nil where the device has no fp8 tensor cores (A100), so fp8 weights are
    /// dequantised and multiplied in bf16 there (vLLM's FP8 Marlin path).
    public var fp8TFLOPs: Double?
    public var efficiency: Efficiency
    /// CPU time per step of engines with no host profile (TensorRT-LLM and NIM in the
    /// published comparison); vLLM's engines use profiles/engines/ instead.
    public var stepOverheadMs: Double
    public var allReduceLatencyUs: Double
    public var allReduceBandwidthGBps: Double
    public var hostToDeviceGBps: Double
    /// Rate of reading an adapter from local storage into host memory (a host-cache miss).
    public var adapterDiskReadGBps: Double
    public var loraLoadOverheadMs: Double
    /// Memory vLLM's profiling run leaves for activations and the like, per GPU.
    public var memoryReserveGiB: Double
    /// Extra non-torch memory per GPU (NCCL, custom all-reduce) when tensor parallel.
    public var tensorParallelReserveGiB: Double
    /// vLLM's `max_num_seqs` / `max_num_batched_tokens` defaults for this device class.
    public var defaultMaxNumSeqs: Int
    public var defaultMaxNumBatchedTokens: Int

    public struct Efficiency: Codable, Sendable, Equatable {
        /// Fraction of peak HBM bandwidth reached streaming weights (η_m).
        public var memory: Double
        /// Fraction of dense peak reached by large GEMMs (η_c).
        public var compute: Double
        /// Fraction of peak bandwidth reached reading the KV cache in decode attention (η_kv).
        public var kvRead: Double
        /// Fraction of dense peak reached by prefill attention (η_a).
        public var attention: Double
        /// Fraction of the fp8 peak reached by fp8 GEMMs (η_c8); needed only with fp8TFLOPs.
        public var computeFP8: Double?
    }

    public var isInstant: Bool { instant ?? false }
}

/// A vLLM engine generation, read from `profiles/engines/NAME.yaml`: how it schedules, and its
/// costs on the host. `serve --engine-profile NAME` runs it.
public struct EngineProfile: Codable, Sendable, Equatable {
    public var name: String
    public var description: String
    public var scheduling: EngineConfig.Scheduling
    public var host: HostCost
}

/// The engine's CPU time in a step, beside the accelerator's: scheduling, preparing inputs,
/// processing outputs. It grows with the model's layers (kernel launches) and with the
/// sequences in the batch (their metadata and tokens). The vLLM v0.6.0 blog measured v0.5.3
/// spending 62 % of its time there for an 8B model on an H100.
public struct HostCost: Codable, Sendable, Equatable {
    public var perStepMs: Double
    public var perLayerUs: Double
    public var perSequenceUs: Double

    public init(perStepMs: Double, perLayerUs: Double, perSequenceUs: Double) {
        self.perStepMs = perStepMs
        self.perLayerUs = perLayerUs
        self.perSequenceUs = perSequenceUs
    }

    public func seconds(layers: Int, sequences: Int) -> Double {
        perStepMs * 1e-3 + (perLayerUs * Double(layers) + perSequenceUs * Double(sequences)) * 1e-6
    }
}

/// A model's architecture, read from `profiles/models/NAME.yaml`.
public struct ModelProfile: Codable, Sendable, Equatable {
    public var name: String
    /// The Hugging Face id `--model` usually names; also the served name by default.
    public var huggingFaceID: String
    /// Other `--model` values that mean this architecture.
    public var aliases: [String]?
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var intermediate: Int
    public var vocab: Int
    public var maxModelLen: Int
    public var dtypeBytes: Int
    /// The LM head shares the embedding matrix (config.json's `tie_word_embeddings`); nil: untied.
    public var tiedEmbeddings: Bool?
    /// How long answers run when only EOS ends them: a log-normal over output tokens.
    public var outputLength: OutputLength

    public struct OutputLength: Codable, Sendable, Equatable {
        public var median: Double
        public var sigma: Double
    }

    /// Linear-layer parameters of one transformer layer (QKV, O, gate, up, down).
    public var linearParamsPerLayer: Double {
        let h = Double(hidden), headDim = Double(headDim)
        let qkv = h * Double(heads + 2 * kvHeads) * headDim
        let output = Double(heads) * headDim * h
        let mlp = 3 * h * Double(intermediate)
        return qkv + output + mlp
    }

    /// KV cache bytes per token over all layers, before tensor-parallel sharding.
    public var kvBytesPerToken: Double {
        2 * Double(layers) * Double(kvHeads) * Double(headDim) * Double(dtypeBytes)
    }

    /// All weights: layers, embeddings and the LM head unless tied to them.
    public var parameterCount: Double {
        Double(layers) * linearParamsPerLayer + (tiedEmbeddings == true ? 1 : 2) * Double(vocab) * Double(hidden)
    }

    /// Bytes of one LoRA adapter of `rank` over all seven projections, in the weight dtype:
    /// r · Σ(d_in + d_out) · layers · bytes (timing/MODEL.md §6).
    public func loraAdapterBytes(rank: Int) -> Int {
        let h = hidden, q = heads * headDim, kv = kvHeads * headDim, i = intermediate
        let perRank = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h)
        return rank * perRank * layers * dtypeBytes
    }
}

/// Where profiles live and how to find them by name.
public struct ProfileStore: Sendable {
    public let root: URL

    public init(root: URL) { self.root = root }

    /// Finds `profiles/`: `$UNDERSTUDY_PROFILES`, then the working directory and its parents,
    /// then the executable's directory and its parents (so `swift run` and a built binary in
    /// `.build/release` both find the checkout's profiles).
    public static func locate() throws -> ProfileStore {
        if let explicit = ProcessInfo.processInfo.environment["UNDERSTUDY_PROFILES"] {
            return ProfileStore(root: URL(fileURLWithPath: explicit))
        }
        var starts = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        for start in starts {
            var directory = start.standardizedFileURL
            for _ in 0..<8 {
                let candidate = directory.appendingPathComponent("profiles")
                if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("accelerators").path) {
                    return ProfileStore(root: candidate)
                }
                directory.deleteLastPathComponent()
            }
        }
        throw ProfileError("cannot find the profiles/ directory; run from the checkout or set UNDERSTUDY_PROFILES")
    }

    public func acceleratorNames() throws -> [String] { try names(in: "accelerators") }
    public func modelNames() throws -> [String] { try names(in: "models") }

    public func accelerator(_ name: String) throws -> AcceleratorProfile {
        try load(AcceleratorProfile.self, kind: "accelerators", name: name)
    }

    public func model(_ name: String) throws -> ModelProfile {
        try load(ModelProfile.self, kind: "models", name: name)
    }

    public func engine(_ name: String) throws -> EngineProfile {
        try load(EngineProfile.self, kind: "engines", name: name)
    }

    /// The model profile for a `--model` value: a profile name, its Hugging Face id or an alias.
    public func model(matching modelID: String) throws -> ModelProfile? {
        let wanted = modelID.lowercased()
        for name in try modelNames() {
            let profile = try model(name)
            let keys = [profile.name, profile.huggingFaceID] + (profile.aliases ?? [])
            if keys.contains(where: { $0.lowercased() == wanted }) { return profile }
        }
        return nil
    }

    private func names(in kind: String) throws -> [String] {
        let directory = root.appendingPathComponent(kind)
        return try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".yaml") }
            .map { String($0.dropLast(5)) }
            .sorted()
    }

    /// A profile file's text; `missing` says what is unknown when there is no such file. One
    /// that is there but unreadable (permissions, not UTF-8) says why instead.
    static func read(_ file: URL, missing: () -> ProfileError) throws -> String {
        do {
            return try String(contentsOf: file, encoding: .utf8)
        } catch {
            guard !FileManager.default.fileExists(atPath: file.path) else {
                throw ProfileError("\(file.path): cannot read the file: \(error.localizedDescription)")
            }
            throw missing()
        }
    }

    private func load<T: Decodable>(_ type: T.Type, kind: String, name: String) throws -> T {
        let file = root.appendingPathComponent(kind).appendingPathComponent(name + ".yaml")
        let text = try Self.read(file) {
            // No directory to list means no profiles of this kind: "none" says so.
            let known = (try? names(in: kind))?.joined(separator: ", ") ?? "none"
            return ProfileError("no \(kind.dropLast()) profile '\(name)' (known: \(known))")
        }
        do {
            return try YAMLDecoder().decode(T.self, from: text)
        } catch {
            throw ProfileError("\(file.path): \(error)")
        }
    }
}

/// A profile that cannot be found or read.
public struct ProfileError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

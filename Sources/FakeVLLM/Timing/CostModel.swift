/// What one step runs, summarised for the cost model.
public struct BatchShape: Sendable, Equatable {
    /// Prompt tokens computed this step (whole prompts or chunks).
    public var prefillTokens = 0
    /// Σ p·(c + p/2) over prefill chunks of p new tokens after c computed ones: the causal
    /// attention work of the chunks.
    public var prefillAttentionWork = 0.0
    /// Sequences decoding one token each.
    public var decodeSequences = 0
    /// Σ context length over decoding sequences (KV read by decode attention).
    public var decodeContextTokens = 0
    /// Sequences sampling a token this step (through the LM head).
    public var sampledSequences = 0
    /// Sequences in the batch, prefilling or decoding (the host's work grows with them).
    public var sequences = 0
    /// Bytes of the distinct adapters in the batch (zero without LoRA).
    public var adapterBytes = 0
    /// Time spent loading adapters into GPU slots before this step can run.
    public var adapterLoadSeconds = 0.0

    public init() {}

    public var tokens: Int { prefillTokens + decodeSequences }
}

/// How weights and the KV cache are stored, as vLLM's `--quantization` and `--kv-cache-dtype`.
public struct Precision: Sendable, Equatable {
    /// `--quantization fp8`: one byte per weight; fp8 GEMMs where the device has them.
    public var fp8Weights: Bool
    /// `--kv-cache-dtype fp8`: one byte per cached K/V value.
    public var fp8KVCache: Bool

    public init(fp8Weights: Bool = false, fp8KVCache: Bool = false) {
        self.fp8Weights = fp8Weights
        self.fp8KVCache = fp8KVCache
    }

    public static let bf16 = Precision()
}

/// Step time for one accelerator × model × tensor-parallel degree, as timing/MODEL.md §3:
/// `t0 + sqrt(T_mem² + T_comp²) + T_head + T_kv + T_prefill_attn + T_allreduce`.
public struct CostModel: Sendable {
    public let accelerator: AcceleratorProfile
    public let model: ModelProfile
    public let tensorParallel: Int
    public let precision: Precision
    /// The engine's CPU time per step; nil: the accelerator's fixed `stepOverheadMs`.
    public let host: HostCost?
    /// Bytes of one weight and of one cached K or V value.
    public let weightBytes: Double
    public let kvBytesPerToken: Double

    // Per-GPU constants, computed once.
    private let layerWeightSeconds: Double   // T_mem for all layers
    private let layerFlopSeconds: Double     // T_comp per token for all layers
    private let headWeightSeconds: Double
    private let headFlopSeconds: Double      // per sampled sequence
    private let kvSecondsPerToken: Double
    private let attentionSecondsPerWork: Double
    private let allReduceFixedSeconds: Double
    private let allReduceSecondsPerToken: Double
    private let adapterSecondsPerByte: Double
    /// Extra fraction of linear-layer time while adapters are in the batch (MODEL.md §6, α).
    public static let loraLinearOverhead = 0.05

    public init(accelerator: AcceleratorProfile, model: ModelProfile, tensorParallel: Int = 1, precision: Precision = .bf16, host: HostCost? = nil) {
        self.accelerator = accelerator
        self.host = host
        self.model = model
        self.tensorParallel = tensorParallel
        self.precision = precision
        let tp = Double(tensorParallel)
        let bandwidth = accelerator.memoryBandwidthTBps * 1e12
        let eff = accelerator.efficiency
        weightBytes = precision.fp8Weights ? 1 : Double(model.dtypeBytes)
        kvBytesPerToken = model.kvBytesPerToken / Double(model.dtypeBytes) * (precision.fp8KVCache ? 1 : Double(model.dtypeBytes))
        // Linear layers run fp8 GEMMs only where the device has fp8 peaks; elsewhere fp8 weights
        // are dequantised and multiplied at the bf16 rate.
        let gemmFlops: Double
        if precision.fp8Weights, let fp8 = accelerator.fp8TFLOPs, let fp8Efficiency = eff.computeFP8 {
            gemmFlops = fp8 * 1e12 * fp8Efficiency
        } else {
            gemmFlops = accelerator.bf16TFLOPs * 1e12 * eff.compute
        }
        let bf16Flops = accelerator.bf16TFLOPs * 1e12
        let linearParams = Double(model.layers) * model.linearParamsPerLayer / tp
        layerWeightSeconds = linearParams * weightBytes / (eff.memory * bandwidth)
        layerFlopSeconds = 2 * linearParams / gemmFlops
        // The LM head stays in the model's dtype (vLLM does not quantise it).
        let headParams = Double(model.vocab) * Double(model.hidden) / tp
        headWeightSeconds = headParams * Double(model.dtypeBytes) / (eff.memory * bandwidth)
        headFlopSeconds = 2 * headParams / (eff.compute * bf16Flops)
        kvSecondsPerToken = kvBytesPerToken / tp / (eff.kvRead * bandwidth)
        attentionSecondsPerWork = Double(model.layers) * 4 * Double(model.heads * model.headDim) / tp / (eff.attention * bf16Flops)
        if tensorParallel > 1 {
            allReduceFixedSeconds = 2 * Double(model.layers) * accelerator.allReduceLatencyUs * 1e-6
            allReduceSecondsPerToken = 2 * Double(model.layers) * Double(model.hidden) * 2 / (accelerator.allReduceBandwidthGBps * 1e9)
        } else {
            allReduceFixedSeconds = 0
            allReduceSecondsPerToken = 0
        }
        adapterSecondsPerByte = 1 / (eff.memory * bandwidth)
    }

    /// Seconds one engine step takes on this device.
    public func stepSeconds(_ batch: BatchShape) -> Double {
        guard !accelerator.isInstant, batch.tokens > 0 else { return 0 }
        let n = Double(batch.tokens)
        var linear = (layerWeightSeconds * layerWeightSeconds + square(layerFlopSeconds * n)).squareRoot()
        if batch.adapterBytes > 0 {
            linear = linear * (1 + Self.loraLinearOverhead) + Double(batch.adapterBytes) / Double(tensorParallel) * adapterSecondsPerByte
        }
        let sampled = Double(batch.sampledSequences)
        let head = sampled > 0 ? (headWeightSeconds * headWeightSeconds + square(headFlopSeconds * sampled)).squareRoot() : 0
        let kv = Double(batch.decodeContextTokens) * kvSecondsPerToken
        let prefillAttention = batch.prefillAttentionWork * attentionSecondsPerWork
        let allReduce = allReduceFixedSeconds + allReduceSecondsPerToken * n
        let overhead = host?.seconds(layers: model.layers, sequences: batch.sequences) ?? accelerator.stepOverheadMs * 1e-3
        return overhead + linear + head + kv + prefillAttention + allReduce + batch.adapterLoadSeconds
    }

    /// Seconds to bring an adapter of `bytes` into a GPU slot: `c_load + bytes / host_to_device_bw`
    /// (MODEL.md §6), plus reading it from storage first when it is not in the host cache.
    public func adapterLoadSeconds(bytes: Int, fromStorage: Bool) -> Double {
        guard !accelerator.isInstant else { return 0 }
        let read = fromStorage ? Double(bytes) / (accelerator.adapterDiskReadGBps * 1e9) : 0
        return accelerator.loraLoadOverheadMs * 1e-3 + Double(bytes) / (accelerator.hostToDeviceGBps * 1e9) + read
    }

    /// KV blocks per GPU as vLLM sizes them:
    /// `(util × device memory − weights − reserves − LoRA slots) / (block_size × kv bytes per token)`.
    public func kvBlocks(gpuMemoryUtilization: Double, blockSize: Int, loraReserveBytes: Int = 0) -> Int {
        let tp = Double(tensorParallel)
        let gib = 1024.0 * 1024 * 1024
        let budget = gpuMemoryUtilization * accelerator.memoryMiB * 1024 * 1024
        let headAndEmbedding = (model.tiedEmbeddings == true ? 1 : 2) * Double(model.vocab) * Double(model.hidden)
        let weights = ((model.parameterCount - headAndEmbedding) * weightBytes + headAndEmbedding * Double(model.dtypeBytes)) / tp
        var reserve = accelerator.memoryReserveGiB * gib + Double(loraReserveBytes) / tp
        if tensorParallel > 1 { reserve += accelerator.tensorParallelReserveGiB * gib }
        return max(0, Int(((budget - weights - reserve) / kvBytesPerBlock(blockSize: blockSize)).rounded(.down)))
    }

    /// Bytes of one KV block on one GPU.
    public func kvBytesPerBlock(blockSize: Int) -> Double {
        Double(blockSize) * kvBytesPerToken / Double(tensorParallel)
    }

    @inline(__always) private func square(_ x: Double) -> Double { x * x }
}

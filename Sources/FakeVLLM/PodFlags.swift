/// The `vllm serve` flags that shape a pod's engine, in one table with one parser and one check
/// each: `understudy serve` applies its command line through it, a fleet file's `engineArgs`
/// (YAML keys are the flag names) are applied through it, and a process pod is started with the
/// arguments it renders — as llm-d-inference-sim has one configuration for flags and file.
public enum PodFlags {
    public struct Flag: Sendable {
        public let name: String
        /// Takes no value (`--enable-lora`); in a file, `true` or `false`.
        public let isSwitch: Bool
        let apply: @Sendable (inout ServerConfiguration, String) throws(PodFlagError) -> Void
        /// The value to pass on a command line, nil when the configuration has the default
        /// (a switch renders "" when on).
        let render: @Sendable (ServerConfiguration) -> String?
    }

    /// The flags, by vLLM's names.
    public static let all: [Flag] = [
        integer("max-model-len", \.maxModelLen, parse: parseMaxModelLen,
                render: { $0 == ServerConfiguration.fitMaxModelLen ? "auto" : "\($0)" }),
        integer("max-num-seqs", \.maxNumSeqs, atLeast: 1),
        integer("max-num-batched-tokens", \.maxNumBatchedTokens, atLeast: 1),
        Flag(name: "block-size", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            configuration.blockSize = try int(text, "block-size", atLeast: 1)
        }, render: { $0.blockSize == 16 ? nil : "\($0.blockSize)" }),
        Flag(name: "gpu-memory-utilization", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            let value = try double(text, "gpu-memory-utilization")
            guard value > 0, value <= 1 else { throw PodFlagError("gpu-memory-utilization must be within (0, 1], got \(text)") }
            configuration.gpuMemoryUtilization = value
        }, render: { $0.gpuMemoryUtilization == 0.9 ? nil : "\($0.gpuMemoryUtilization)" }),
        choice("quantization", ["fp8"], \.quantization),
        Flag(name: "kv-cache-dtype", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            try check(text, in: ["auto", "fp8", "fp8_e4m3", "fp8_e5m2"], "kv-cache-dtype")
            configuration.kvCacheDtype = text
        }, render: { $0.kvCacheDtype == "auto" ? nil : $0.kvCacheDtype }),
        Flag(name: "enable-prefix-caching", isSwitch: true, apply: { configuration, text throws(PodFlagError) in
            configuration.enablePrefixCaching = try bool(text, "enable-prefix-caching")
        }, render: { $0.enablePrefixCaching.map { $0 ? "" : "false" } }),
        Flag(name: "num-scheduler-steps", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            configuration.numSchedulerSteps = try int(text, "num-scheduler-steps", atLeast: 1)
        }, render: { $0.numSchedulerSteps == 1 ? nil : "\($0.numSchedulerSteps)" }),
        Flag(name: "engine-profile", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            guard !text.isEmpty else { throw PodFlagError("engine-profile must name a profile (profiles/engines)") }
            configuration.engineProfile = text
        }, render: { $0.engineProfile == ServerConfiguration.defaultEngineProfile ? nil : $0.engineProfile }),
        Flag(name: "max-loras", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            configuration.maxLoras = try int(text, "max-loras", atLeast: 1)
        }, render: { $0.maxLoras == 1 ? nil : "\($0.maxLoras)" }),
        integer("max-cpu-loras", \.maxCPULoras, atLeast: 1),
        Flag(name: "max-lora-rank", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            let rank = try int(text, "max-lora-rank", atLeast: 1)
            guard loraRanks.contains(rank) else {
                throw PodFlagError("max-lora-rank must be one of \(loraRanks.map(String.init).joined(separator: ", ")) (vLLM's choices), got \(text)")
            }
            configuration.maxLoRARank = rank
        }, render: { $0.maxLoRARank == 16 ? nil : "\($0.maxLoRARank)" }),
        Flag(name: "seed", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            guard let seed = UInt64(text) else { throw PodFlagError("seed must be an integer ≥ 0, got \(text)") }
            configuration.seed = seed
        }, render: { $0.seed == 0 ? nil : "\($0.seed)" }),
        switchFlag("enable-prompt-tokens-details", \.enablePromptTokensDetails),
        switchFlag("enable-server-load-tracking", \.enableServerLoadTracking),
        Flag(name: "time-scale", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            let scale = try double(text, "time-scale")
            guard scale > 0 else { throw PodFlagError("time-scale must be a positive number, got \(text)") }
            configuration.timeScale = scale
        }, render: { $0.timeScale == 1 ? nil : "\($0.timeScale)" }),
        Flag(name: "served-model-name", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            guard !text.isEmpty else { throw PodFlagError("served-model-name must not be empty") }
            configuration.servedModelNames = [text]
        }, render: { $0.servedModelNames.first }),
        Flag(name: "dtype", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            try check(text, in: ["auto", "half", "float16", "bfloat16", "float", "float32"], "dtype")
            configuration.dtype = text
        }, render: { $0.dtype == "auto" ? nil : $0.dtype }),
        switchFlag("enable-auto-tool-choice", \.enableAutoToolChoice),
        Flag(name: "tool-call-parser", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            guard ToolCallFormat(parser: text) != nil else {
                throw PodFlagError("invalid tool call parser: \(text) (chose from { \(ToolCallFormat.parserNames.joined(separator: ",")) })")
            }
            configuration.toolCallParser = text
        }, render: { $0.toolCallParser }),
        Flag(name: "tokenizer", isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            guard !text.isEmpty else { throw PodFlagError("tokenizer must name a file or directory") }
            configuration.tokenizer = text
        }, render: { $0.tokenizer }),
    ]

    public static let names: Set<String> = Set(all.map(\.name))

    /// Sets `name` to `value` (a switch takes true or false), checked as `vllm serve` checks it.
    public static func apply(_ name: String, _ value: String, to configuration: inout ServerConfiguration) throws(PodFlagError) {
        guard let flag = all.first(where: { $0.name == name }) else {
            throw PodFlagError("\(name) is not a flag a pod takes; flags: \(names.sorted().joined(separator: ", "))")
        }
        try flag.apply(&configuration, value)
    }

    /// The command-line arguments that give a pod this configuration (defaults left out).
    public static func arguments(for configuration: ServerConfiguration) -> [String] {
        all.flatMap { flag -> [String] in
            guard let value = flag.render(configuration) else { return [] }
            if flag.isSwitch { return value == "false" ? ["--no-\(flag.name)"] : ["--\(flag.name)"] }
            return ["--\(flag.name)", value]
        }
    }

    /// vLLM's LoRA ranks.
    static let loraRanks = [1, 8, 16, 32, 64, 128, 256, 320, 512]

    // MARK: Parsers

    /// `--max-model-len`: an integer, vLLM's human-readable forms (k = 1000, K = 1024, m/M,
    /// g/G), or `auto`/-1 for the longest context the KV cache holds.
    static func parseMaxModelLen(_ raw: String) throws(PodFlagError) -> Int {
        let text = raw.trimmingCharacters(in: .whitespaces)
        if text == "auto" || text == "-1" { return ServerConfiguration.fitMaxModelLen }
        let multipliers: [Character: Double] = ["k": 1e3, "K": 1024, "m": 1e6, "M": 1024 * 1024, "g": 1e9, "G": 1024 * 1024 * 1024]
        var number = Substring(text)
        var multiplier = 1.0
        if let last = text.last, let factor = multipliers[last] {
            number = text.dropLast()
            multiplier = factor
        }
        guard let value = Double(number), value.isFinite, value > 0, (value * multiplier) < 1e9, (value * multiplier).rounded() == value * multiplier else {
            throw PodFlagError("max-model-len must be a positive integer (or 32k, 32K, auto), got \(text)")
        }
        return Int(value * multiplier)
    }

    static func int(_ text: String, _ name: String, atLeast minimum: Int) throws(PodFlagError) -> Int {
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= minimum else {
            throw PodFlagError("\(name) must be an integer ≥ \(minimum), got \(text)")
        }
        return value
    }

    static func double(_ text: String, _ name: String) throws(PodFlagError) -> Double {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite else {
            throw PodFlagError("\(name) must be a number, got \(text)")
        }
        return value
    }

    static func bool(_ text: String, _ name: String) throws(PodFlagError) -> Bool {
        guard let value = Bool(text.lowercased()) else { throw PodFlagError("\(name) must be true or false, got \(text)") }
        return value
    }

    static func check(_ text: String, in choices: [String], _ name: String) throws(PodFlagError) {
        guard choices.contains(text) else {
            throw PodFlagError("argument --\(name): invalid choice: '\(text)' (choose from \(choices.map { "'\($0)'" }.joined(separator: ", ")))")
        }
    }

    // MARK: Table helpers

    private static func integer(
        _ name: String, _ field: WritableKeyPath<ServerConfiguration, Int?> & Sendable, atLeast minimum: Int = 1,
        parse: (@Sendable (String) throws(PodFlagError) -> Int)? = nil, render: @escaping @Sendable (Int) -> String = { "\($0)" }
    ) -> Flag {
        Flag(name: name, isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            if let parse {
                configuration[keyPath: field] = try parse(text)
            } else {
                configuration[keyPath: field] = try int(text, name, atLeast: minimum)
            }
        }, render: { $0[keyPath: field].map(render) })
    }

    private static func choice(_ name: String, _ choices: [String], _ field: WritableKeyPath<ServerConfiguration, String?> & Sendable) -> Flag {
        Flag(name: name, isSwitch: false, apply: { configuration, text throws(PodFlagError) in
            try check(text, in: choices, name)
            configuration[keyPath: field] = text
        }, render: { $0[keyPath: field] })
    }

    private static func switchFlag(_ name: String, _ field: WritableKeyPath<ServerConfiguration, Bool> & Sendable) -> Flag {
        Flag(name: name, isSwitch: true, apply: { configuration, text throws(PodFlagError) in
            configuration[keyPath: field] = try bool(text, name)
        }, render: { $0[keyPath: field] ? "" : nil })
    }
}

/// A pod flag's value that `vllm serve` would refuse.
public struct PodFlagError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `vllm serve`'s command line as deployments write it, turned into `understudy serve`'s: option
/// names with underscores (`--max_num_seqs`, which vLLM's parser accepts), vLLM's short aliases
/// (`-tp`, `-pp`, `-dp`, `-O3`), and the flags that change nothing an emulated server does, which
/// are taken out and reported (docs/fakevllm.md lists them). Anything else passes through to the
/// argument parser, which refuses what it does not know, as vLLM's does.
public enum VLLMCommandLine {
    /// How many values an accepted flag takes.
    public enum Arity: Sendable {
        /// A switch; its `--no-` form (argparse's BooleanOptionalAction) is accepted too.
        case flag
        /// Exactly one value, as `--dtype auto` or `--dtype=auto`.
        case value
        /// A value when the next argument is not an option (`--hf-token [TOKEN]`).
        case optionalValue
    }

    /// vLLM flags that change nothing the emulator does: precision and loading details, the
    /// chat template, logging, CUDA graphs and compilation, distributed back ends, tracing.
    /// Each keeps vLLM's name; the comment says why it has no effect here.
    public static let acceptedWithoutEffect: [String: Arity] = [
        // Loading the weights: no weights are loaded.
        "trust-remote-code": .flag, "download-dir": .value, "load-format": .value, "revision": .value,
        "code-revision": .value, "tokenizer-revision": .value, "tokenizer-mode": .value, "hf-token": .optionalValue,
        "hf-overrides": .value, "config-format": .value, "max-parallel-loading-workers": .value, "safetensors-load-strategy": .value,
        "model-loader-extra-config": .value, "ignore-patterns": .value, "skip-tokenizer-init": .flag,
        // Kernels, CUDA graphs and compilation: the cost model has no kernel choices.
        "enforce-eager": .flag, "compilation-config": .value, "max-seq-len-to-capture": .value, "cuda-graph-sizes": .value,
        "disable-custom-all-reduce": .flag, "disable-cascade-attn": .flag, "disable-sliding-window": .flag,
        "attention-backend": .value, "async-scheduling": .flag,
        // Memory the emulator does not model: CPU swap and offload.
        "swap-space": .value, "cpu-offload-gb": .value,
        // The emulated engine always schedules as vLLM V1 does, with chunked prefill.
        "enable-chunked-prefill": .flag, "max-num-partial-prefills": .value, "max-long-partial-prefills": .value,
        "long-prefill-token-threshold": .value,
        // Chat templates and generation defaults: prompts are tokenized as plain text.
        "chat-template": .value, "chat-template-content-format": .value, "generation-config": .value,
        "override-generation-config": .value, "response-role": .value, "reasoning-parser": .value,
        "limit-mm-per-prompt": .value, "mm-processor-kwargs": .value, "lora-dtype": .value, "fully-sharded-loras": .flag,
        // Logging, tracing and the HTTP front end's process layout.
        "disable-log-requests": .flag, "enable-log-requests": .flag, "uvicorn-log-level": .value,
        "disable-fastapi-docs": .flag, "disable-frontend-multiprocessing": .flag,
        "api-server-count": .value, "otlp-traces-endpoint": .value, "collect-detailed-traces": .value,
        "enable-request-id-headers": .flag, "root-path": .value, "allowed-origins": .value, "allowed-methods": .value,
        "allowed-headers": .value, "allow-credentials": .flag, "middleware": .value,
        "distributed-executor-backend": .value, "worker-cls": .value, "structured-outputs-config": .value,
        "guided-decoding-backend": .value, "kv-events-config": .value,
    ]

    /// vLLM's short options and the long names they stand for.
    static let shortAliases = ["-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size", "-dp": "--data-parallel-size"]

    /// The arguments for `understudy serve`, and the vLLM arguments dropped as having no effect
    /// (for a log line).
    public static func normalize(_ arguments: [String]) -> (arguments: [String], ignored: [String]) {
        var kept: [String] = []
        var ignored: [String] = []
        var index = 0
        while index < arguments.count {
            var argument = arguments[index]
            index += 1
            if argument == "--" {
                kept += arguments[(index - 1)...]
                break
            }
            if let long = shortAliases[argument] { argument = long }
            if argument.hasPrefix("-O"), !argument.hasPrefix("--") {
                // -O3, -O.level=3 or -O 3: the compilation level.
                if argument == "-O", index < arguments.count { index += 1 }
                ignored.append(argument)
                continue
            }
            guard argument.hasPrefix("--"), argument.count > 2 else {
                kept.append(argument)
                continue
            }
            let body = argument.dropFirst(2)
            let equals = body.firstIndex(of: "=")
            let name = String(body[..<(equals ?? body.endIndex)]).replacingOccurrences(of: "_", with: "-")
            let inline = equals.map { String(body[body.index(after: $0)...]) }
            let positive = name.hasPrefix("no-") ? String(name.dropFirst(3)) : name
            if let arity = acceptedWithoutEffect[name] ?? (acceptedWithoutEffect[positive] == .flag ? .flag : nil) {
                var shown = "--" + name
                switch arity {
                case .flag:
                    if let inline { shown += "=" + inline }
                case .value:
                    if let inline {
                        shown += "=" + inline
                    } else if index < arguments.count {
                        shown += " " + arguments[index]
                        index += 1
                    }
                case .optionalValue:
                    if let inline {
                        shown += "=" + inline
                    } else if index < arguments.count, !arguments[index].hasPrefix("-") {
                        index += 1  // a secret: not echoed
                    }
                }
                ignored.append(shown)
                continue
            }
            kept.append("--" + name + (inline.map { "=" + $0 } ?? ""))
        }
        return (kept, ignored)
    }
}

@testable import FakeVLLM
import Testing

/// One table of pod flags: what a fleet file sets is what a process pod is started with.
struct PodFlagsTests {
    /// Arguments as `understudy serve` reads them back: `--name value`, `--switch`, `--no-switch`.
    static func read(_ arguments: [String]) throws -> ServerConfiguration {
        var configuration = ServerConfiguration()
        var index = 0
        while index < arguments.count {
            let name = String(arguments[index].dropFirst(2))
            if name.hasPrefix("no-") {
                try PodFlags.apply(String(name.dropFirst(3)), "false", to: &configuration)
                index += 1
            } else if let flag = PodFlags.all.first(where: { $0.name == name }), flag.isSwitch {
                try PodFlags.apply(name, "true", to: &configuration)
                index += 1
            } else {
                try PodFlags.apply(name, arguments[index + 1], to: &configuration)
                index += 2
            }
        }
        return configuration
    }

    @Test func whatAFileSetsAProcessPodIsStartedWith() throws {
        let set: [(String, String)] = [
            ("max-model-len", "32K"), ("max-num-seqs", "64"), ("block-size", "32"), ("gpu-memory-utilization", "0.8"),
            ("quantization", "fp8"), ("kv-cache-dtype", "fp8_e4m3"), ("enable-prefix-caching", "false"), ("max-loras", "3"),
            ("max-lora-rank", "64"), ("seed", "7"), ("enable-prompt-tokens-details", "true"), ("time-scale", "2.5"),
            ("served-model-name", "llama"), ("dtype", "float32"), ("enable-auto-tool-choice", "true"), ("tool-call-parser", "hermes"),
            ("engine-profile", "vllm-v0"), ("num-scheduler-steps", "8"),
        ]
        var configuration = ServerConfiguration()
        for (name, value) in set { try PodFlags.apply(name, value, to: &configuration) }
        #expect(configuration.maxModelLen == 32768 && configuration.enablePrefixCaching == false && configuration.dtype == "float32")
        let arguments = PodFlags.arguments(for: configuration)
        #expect(arguments.contains("--no-enable-prefix-caching") && arguments.contains("--enable-auto-tool-choice"))
        #expect(arguments.contains("--engine-profile") && arguments.contains("--num-scheduler-steps"))
        let again = try Self.read(arguments)
        for flag in PodFlags.all { #expect(flag.render(again) == flag.render(configuration), "\(flag.name)") }
        #expect(PodFlags.arguments(for: ServerConfiguration()).isEmpty, "defaults are left out")
    }

    @Test(arguments: [
        ("max-num-seqs", "0", "max-num-seqs must be an integer ≥ 1, got 0"),
        ("dtype", "fp4", "argument --dtype: invalid choice: 'fp4'"),
        ("max-lora-rank", "12", "max-lora-rank must be one of 1, 8, 16"),
        ("time-scale", "-1", "time-scale must be a positive number"),
        ("max-model-len", "lots", "max-model-len must be a positive integer"),
        ("tool-call-parser", "mine", "invalid tool call parser: mine"),
        ("enable-lora-everywhere", "true", "enable-lora-everywhere is not a flag a pod takes"),
    ])
    func aBadValueIsRefusedAsVLLMRefusesIt(_ name: String, _ value: String, _ message: String) {
        var configuration = ServerConfiguration()
        #expect { try PodFlags.apply(name, value, to: &configuration) } throws: { "\($0)".contains(message) }
    }
}

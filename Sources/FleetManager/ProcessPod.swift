import FakeVLLM
import Foundation
import Load
import NIOConcurrencyHelpers
import NIOPosix

/// A pod as its own OS process: `understudy serve --control-stdin` with the pod's flags. Kill
/// is SIGKILL and hang is SIGSTOP (SIGCONT on restore), as a node would do them; the rest goes
/// over the child's stdin (`PodControl`).
final class ProcessPod: PodServer, @unchecked Sendable {
    let port: Int
    private let process: Process
    private let control: FileHandle
    private let exited: NIOLockedValueBox<Bool>
    private let lock = NSLock()

    private init(port: Int, process: Process, control: FileHandle, exited: NIOLockedValueBox<Bool>) {
        self.port = port
        self.process = process
        self.control = control
        self.exited = exited
    }

    /// Starts `executable serve …` and waits for it to say where it listens.
    static func launch(_ configuration: ServerConfiguration, executable: String, profiles: ProfileStore) async throws -> ProcessPod {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["serve", "--control-stdin"] + arguments(for: configuration)
        var environment = ProcessInfo.processInfo.environment
        environment["UNDERSTUDY_PROFILES"] = profiles.root.path
        if configuration.allowRuntimeLoRAUpdating { environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "true" }
        process.environment = environment
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        let exited = NIOLockedValueBox(false)
        process.terminationHandler = { _ in exited.withLockedValue { $0 = true } }
        try process.run()
        let port = try await listeningPort(output.fileHandleForReading)
        return ProcessPod(port: port, process: process, control: input.fileHandleForWriting, exited: exited)
    }

    /// Reads the child's output until `serve` prints "listening on http://HOST:PORT", then keeps
    /// draining it so the child never blocks on a full pipe.
    private static func listeningPort(_ output: FileHandle) async throws -> Int {
        struct Reading {
            var text = ""
            var waiting: CheckedContinuation<Int, any Error>?
        }
        let reading = NIOLockedValueBox(Reading())
        return try await withCheckedThrowingContinuation { continuation in
            reading.withLockedValue { $0.waiting = continuation }
            output.readabilityHandler = { handle in
                let data = handle.availableData
                reading.withLockedValue { state in
                    guard let waiting = state.waiting else {
                        if data.isEmpty { handle.readabilityHandler = nil }
                        return
                    }
                    if data.isEmpty {
                        handle.readabilityHandler = nil
                        state.waiting = nil
                        waiting.resume(throwing: FleetError("understudy serve exited before listening: \(state.text)"))
                        return
                    }
                    state.text += String(decoding: data, as: UTF8.self)
                    if let range = state.text.range(of: "listening on http://"),
                       let line = state.text[range.upperBound...].split(separator: "\n").first, state.text[range.upperBound...].contains("\n"),
                       let port = Int(line.split(separator: ":").last ?? "") {
                        state.waiting = nil
                        state.text = ""
                        waiting.resume(returning: port)
                    }
                }
            }
        }
    }

    /// `understudy serve` flags for a configuration (the fleet sets these fields).
    static func arguments(for configuration: ServerConfiguration) -> [String] {
        var arguments = [
            "--host", configuration.host, "--port", "\(configuration.port)", "--model", configuration.model,
            "--accelerator", configuration.accelerator, "--tensor-parallel-size", "\(configuration.tensorParallelSize)",
            "--block-size", "\(configuration.blockSize)", "--gpu-memory-utilization", "\(configuration.gpuMemoryUtilization)",
            "--kv-cache-dtype", configuration.kvCacheDtype, "--seed", "\(configuration.seed)", "--time-scale", "\(configuration.timeScale)",
            "--max-loras", "\(configuration.maxLoras)", "--max-lora-rank", "\(configuration.maxLoRARank)",
        ]
        if !configuration.servedModelNames.isEmpty { arguments += ["--served-model-name"] + configuration.servedModelNames }
        if let value = configuration.maxModelLen { arguments += ["--max-model-len", "\(value)"] }
        if let value = configuration.maxNumSeqs { arguments += ["--max-num-seqs", "\(value)"] }
        if let value = configuration.maxNumBatchedTokens { arguments += ["--max-num-batched-tokens", "\(value)"] }
        if let value = configuration.quantization { arguments += ["--quantization", value] }
        if let value = configuration.maxCPULoras { arguments += ["--max-cpu-loras", "\(value)"] }
        if !configuration.enablePrefixCaching { arguments.append("--no-enable-prefix-caching") }
        if configuration.enableLoRA { arguments.append("--enable-lora") }
        if !configuration.loraModules.isEmpty { arguments += ["--lora-modules"] + configuration.loraModules.map { "\($0.name)=\($0.path)" } }
        if configuration.enablePromptTokensDetails { arguments.append("--enable-prompt-tokens-details") }
        if configuration.enableServerLoadTracking { arguments.append("--enable-server-load-tracking") }
        // The fleet says when the model has loaded (`ready` on stdin).
        if configuration.startupDelay.isInfinite { arguments += ["--startup-delay", "inf"] }
        return arguments
    }

    private func send(_ command: PodControl) throws {
        try lock.withLock { try control.write(contentsOf: Data((command.line + "\n").utf8)) }
    }

    private var hasExited: Bool { exited.withLockedValue { $0 } }

    /// Over HTTP, on a keep-alive connection, as the kubelet probes.
    func probe(timeout: Double) async -> Bool {
        let client = probeClient.withLockedValue { client in
            if let client { return client }
            let made = LoadClient(
                host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton, timeout: .nanoseconds(Int64(timeout * 1e9)))
            client = made
            return made
        }
        return await client.send(.get("/health", stream: "probe")).outcome.isSuccess
    }

    private let probeClient = NIOLockedValueBox<LoadClient?>(nil)

    func preload(adapters: [String]) async throws {
        for adapter in adapters { try send(.preload(adapter)) }
    }

    func markReady() async throws { try send(.ready) }

    func beginDraining() async throws { try send(.drain) }

    /// Its own count is not visible from here; a draining child exits once it has none.
    func requestsInFlight() async throws -> Int { hasExited ? 0 : 1 }

    func stop() async throws {
        probeClient.withLockedValue { $0?.close() }
        guard !hasExited else { return }
        kill(process.processIdentifier, SIGKILL)
        while !hasExited { try await Task.sleep(for: .milliseconds(5)) }
    }

    func perform(_ fault: ChaosAction) async throws {
        switch fault {
        case .hang:
            kill(process.processIdentifier, SIGSTOP)
        case .restore:
            kill(process.processIdentifier, SIGCONT)
            try send(.fault(fault))
        default:
            try send(.fault(fault))
        }
    }
}

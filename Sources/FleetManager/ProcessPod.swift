import FakeVLLM
import Foundation
import NIOConcurrencyHelpers

/// A pod as its own OS process: `understudy serve --control-stdin` with the pod's flags. Kill
/// is SIGKILL and hang is SIGSTOP (SIGCONT on restore), as a node would do them; the rest goes
/// over the child's stdin (`PodControl`), and the child answers health checks on its stdout.
final class ProcessPod: PodServer, @unchecked Sendable {
    let port: Int
    private let process: Process
    private let control: FileHandle
    private let output: ChildOutput
    /// Set once the child has exited and been reaped; no signal is sent after that (its PID may
    /// belong to another process by then).
    private let exited: NIOLockedValueBox<Bool>
    /// Stopped by `hang` (SIGSTOP) and not yet continued: it reads no control line meanwhile.
    private let stopped = NIOLockedValueBox(false)
    private let lock = NSLock()

    private init(port: Int, process: Process, control: FileHandle, output: ChildOutput, exited: NIOLockedValueBox<Bool>) {
        self.port = port
        self.process = process
        self.control = control
        self.output = output
        self.exited = exited
    }

    /// Starts `executable serve …` and waits for it to say where it listens. `onExit` runs when
    /// the child ends, whatever ended it.
    static func launch(
        _ configuration: ServerConfiguration, executable: String, profiles: ProfileStore, onExit: @escaping @Sendable () -> Void
    ) async throws -> ProcessPod {
        // Writing to the stdin of a child that died must fail the write, not end this process.
        signal(SIGPIPE, SIG_IGN)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["serve", "--control-stdin"] + arguments(for: configuration)
        var environment = ProcessInfo.processInfo.environment
        environment["UNDERSTUDY_PROFILES"] = profiles.root.path
        if configuration.allowRuntimeLoRAUpdating { environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "true" }
        process.environment = environment
        let input = Pipe()
        let pipe = Pipe()
        process.standardInput = input
        process.standardOutput = pipe
        let exited = NIOLockedValueBox(false)
        process.terminationHandler = { _ in
            exited.withLockedValue { $0 = true }
            onExit()
        }
        let output = ChildOutput(pipe.fileHandleForReading)
        try process.run()
        let port = try await output.listeningPort()
        return ProcessPod(port: port, process: process, control: input.fileHandleForWriting, output: output, exited: exited)
    }

    /// `understudy serve` flags for a configuration: what the pool sets, then its engine flags
    /// (`PodFlags`, the table its `engineArgs` were read with).
    static func arguments(for configuration: ServerConfiguration) -> [String] {
        var arguments = [
            "--host", configuration.host, "--port", "\(configuration.port)", "--model", configuration.model,
            "--accelerator", configuration.accelerator, "--tensor-parallel-size", "\(configuration.tensorParallelSize)",
        ] + PodFlags.arguments(for: configuration)
        if configuration.enableLoRA { arguments.append("--enable-lora") }
        if !configuration.loraModules.isEmpty { arguments += ["--lora-modules"] + configuration.loraModules.map { "\($0.name)=\($0.path)" } }
        // The fleet says when the model has loaded (`ready` on stdin).
        if configuration.startupDelay.isInfinite { arguments += ["--startup-delay", "inf"] }
        return arguments
    }

    private func send(_ command: PodControl) throws {
        try lock.withLock { try control.write(contentsOf: Data((command.line + "\n").utf8)) }
    }

    private var hasExited: Bool { exited.withLockedValue { $0 } }

    /// Sends a signal unless the child is gone.
    private func deliver(_ number: Int32) {
        exited.withLockedValue { exited in
            if !exited { _ = kill(process.processIdentifier, number) }
        }
    }

    func preload(adapters: [String]) async throws {
        for adapter in adapters { try send(.preload(adapter)) }
    }

    func markReady() async throws { try send(.ready) }

    func beginDraining() async throws { try send(.drain) }

    /// Its own count is not visible from here; a draining child exits once it has none.
    func requestsInFlight() async throws -> Int { hasExited ? 0 : 1 }

    func stop() async throws {
        deliver(SIGKILL)
        while !hasExited { try await Task.sleep(for: .milliseconds(5)) }
    }

    /// Returns once the fault is in force, as an in-process pod's does: the child applies its
    /// control lines in order, so its answer to a probe sent after the fault means the fault was
    /// applied. A child stopped by `hang` reads nothing until restored; its faults are queued
    /// and applied then, and nothing is awaited.
    func perform(_ fault: ChaosAction) async throws {
        switch fault {
        case .hang:
            stopped.withLockedValue { $0 = true }
            deliver(SIGSTOP)
            return
        case .restore:
            deliver(SIGCONT)
            stopped.withLockedValue { $0 = false }
            try send(.fault(fault))
        default:
            try send(.fault(fault))
            if stopped.withLockedValue({ $0 }) { return }
        }
        _ = await probe(timeout: Self.acknowledgementTimeout)
    }

    static let acknowledgementTimeout = 2.0

    /// The kubelet's probe, asked over the control pipe rather than the pod's port: a partition
    /// (which resets the port's connections) must not fail it, as it does not fail a kubelet
    /// probing from the node. A stopped or dead child does not answer: the probe fails.
    func probe(timeout: Double) async -> Bool {
        let id = output.expectHealth()
        do {
            try send(.health(id))
        } catch {
            output.resolveHealth(id, passed: false)
        }
        let output = self.output
        Task {
            // Nothing cancels this timer; were it cancelled, the probe would only fail sooner.
            try? await Task.sleep(for: .nanoseconds(Int64(timeout * 1e9)))
            output.resolveHealth(id, passed: false)
        }
        return await output.health(id)
    }
}

/// Reads a child's stdout: first the line saying where it listens, then `health ID STATUS`
/// answers; everything else is dropped, so the child never blocks on a full pipe.
final class ChildOutput: Sendable {
    private struct State {
        var text = ""
        var listening: CheckedContinuation<Int, any Error>?
        var port: Int?
        var nextProbe = 0
        /// Probes asked and not yet over: waiting for their verdict, or holding one that came
        /// before anyone waited. The first verdict (answer or timeout) wins; the entry then goes.
        var probes: [Int: Probe] = [:]
    }

    private enum Probe {
        case pending(CheckedContinuation<Bool, Never>?)
        case decided(Bool)
    }

    private static func decide(_ id: Int, passed: Bool, in state: inout State) {
        switch state.probes[id] {
        case .pending(let waiter?):
            state.probes[id] = nil
            waiter.resume(returning: passed)
        case .pending(nil):
            state.probes[id] = .decided(passed)
        case .decided, nil:
            break
        }
    }

    private let state = NIOLockedValueBox(State())

    init(_ handle: FileHandle) {
        let state = self.state
        handle.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty {
                handle.readabilityHandler = nil
                state.withLockedValue { state in
                    state.listening?.resume(throwing: FleetError("understudy serve exited before listening: \(state.text)"))
                    state.listening = nil
                }
                return
            }
            state.withLockedValue { state in
                state.text += String(decoding: data, as: UTF8.self)
                while let newline = state.text.firstIndex(of: "\n") {
                    let line = String(state.text[..<newline])
                    state.text.removeSubrange(...newline)
                    Self.read(line, into: &state)
                }
            }
        }
    }

    private static func read(_ line: String, into state: inout State) {
        if state.port == nil, let range = line.range(of: "listening on http://"), let port = Int(line[range.upperBound...].split(separator: ":").last ?? "") {
            state.port = port
            state.listening?.resume(returning: port)
            state.listening = nil
            return
        }
        let words = line.split(separator: " ")
        guard words.count == 3, words[0] == "health", let id = Int(words[1]) else { return }
        decide(id, passed: words[2] == "200", in: &state)
    }

    func listeningPort() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            state.withLockedValue { state in
                if let port = state.port { return continuation.resume(returning: port) }
                state.listening = continuation
            }
        }
    }

    /// A new probe's id.
    func expectHealth() -> Int {
        state.withLockedValue { state in
            state.nextProbe += 1
            state.probes[state.nextProbe] = .pending(nil)
            return state.nextProbe
        }
    }

    /// Ends a probe (a timeout, a failed write) unless its answer came first.
    func resolveHealth(_ id: Int, passed: Bool) {
        state.withLockedValue { Self.decide(id, passed: passed, in: &$0) }
    }

    /// Waits for a probe's verdict.
    func health(_ id: Int) async -> Bool {
        await withCheckedContinuation { continuation in
            state.withLockedValue { state in
                switch state.probes[id] {
                case .decided(let passed):
                    state.probes[id] = nil
                    continuation.resume(returning: passed)
                case .pending:
                    state.probes[id] = .pending(continuation)
                case nil:
                    continuation.resume(returning: false)
                }
            }
        }
    }
}

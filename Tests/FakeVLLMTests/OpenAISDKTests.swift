import FakeVLLM
import Foundation
import Testing

/// The official OpenAI Python SDK against a live server (Tests/python/openai_sdk_check.py).
@Suite struct OpenAISDKTests {
    @Test func officialPythonSDKWorks() async throws {
        let live = try await LiveServer.start { $0.maxModelLen = 256 }
        defer { Task { try? await live.stop() } }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("python/openai_sdk_check.py").path
        let probe = try runTool("python3", ["-c", "import openai"])
        try #require(probe.status == 0, "the OpenAI Python SDK is not installed (pip install openai; `bash .ci/run` does it): \(probe.output)")
        let result = try await Task.detached { try runTool("python3", [script, live.base + "/v1"]) }.value
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all OpenAI SDK checks passed"))
    }
}

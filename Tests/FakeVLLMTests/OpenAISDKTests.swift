import FakeVLLM
import Foundation
import TestSupport
import Testing

/// The official OpenAI Python SDK against a live server (Tests/python/openai_sdk_check.py).
@Suite struct OpenAISDKTests {
    @Test func officialPythonSDKWorks() async throws {
        let live = try await LiveServer.start { $0.maxModelLen = 256 }
        defer { Task { try? await live.stop() } }
        let result = try await runOpenAISDKCheck(base: live.base + "/v1")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all OpenAI SDK checks passed"))
    }
}

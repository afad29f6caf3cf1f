import FakeVLLM
import Foundation
import InferenceAPI
import TestSupport
import Testing

/// The official OpenAI Python SDK against a live server (Tests/python/openai_sdk_check.py).
@Suite struct OpenAISDKTests {
    @Test func officialPythonSDKWorks() async throws {
        let live = try await LiveServer.start {
            $0.maxModelLen = 1024
            $0.enableAutoToolChoice = true
            $0.toolCallParser = "hermes"
        }
        defer { Task { try? await live.stop() } }
        let result = try await runOpenAISDKCheck(base: live.base + "/v1")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all OpenAI SDK checks passed"))
    }

    /// `--ssl-certfile`/`--ssl-keyfile` and `--api-key`, as vLLM serves them.
    @Test func officialPythonSDKWorksOverHTTPSWithAKey() async throws {
        let (certificate, key) = try makeSelfSignedCertificate()
        let live = try await LiveServer.start {
            $0.maxModelLen = 1024
            $0.enableAutoToolChoice = true
            $0.toolCallParser = "hermes"
            $0.tls = ServerTLS(certificateFile: certificate, privateKeyFile: key)
            $0.apiKey = "sk-understudy"
        }
        defer { Task { try? await live.stop() } }
        let result = try await runOpenAISDKCheck(base: "https://127.0.0.1:\(live.server.port)/v1", caCertificate: certificate, apiKey: "sk-understudy")
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("all OpenAI SDK checks passed"))
    }
}

import ArgumentParser

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve an emulated vLLM OpenAI-compatible API.")
    func run() async throws {}
}

import ArgumentParser
import FakeVLLM
import InferenceAPI

/// The one executable: parses arguments and hands off to the libraries.
@main
struct Understudy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "understudy",
        abstract: "The Kubernetes inference-gateway stack on a laptop, with no GPU.",
        subcommands: [
            Up.self, ScenarioCommand.self, Chaos.self, BenchCommand.self, SimCommand.self, ReportCommand.self, Serve.self, GatewayCommand.self,
            Profiles.self, FuzzCommand.self, ManifestsCommand.self, EnvoyConfigCommand.self,
        ])

    /// Every command first raises its soft limit on open files as far as the hard limit allows
    /// (as vLLM and Go programs do): servers, the load client and whole fleets hold a descriptor
    /// per connection.
    static func main() async {
        OpenFileLimit.raiseToHardLimit()
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "serve" {
            // `understudy serve` takes `vllm serve`'s command line as deployments write it.
            let vllm = VLLMCommandLine.normalize(Array(arguments.dropFirst()))
            arguments = ["serve"] + vllm.arguments + vllm.ignored.map { "--accepted-without-effect=" + $0 }
        }
        await main(arguments)
    }
}

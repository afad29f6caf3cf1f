import ArgumentParser

/// The one executable: parses arguments and hands off to the libraries.
@main
struct Understudy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "understudy",
        abstract: "The Kubernetes inference-gateway stack on a laptop, with no GPU.",
        subcommands: [
            Up.self, ScenarioCommand.self, Chaos.self, BenchCommand.self, SimCommand.self, ReportCommand.self, Serve.self, GatewayCommand.self,
            Profiles.self,
        ])
}

import ArgumentParser
import FakeVLLM
import FleetManager
import Foundation

/// `understudy manifests FLEET`: the fleet as Kubernetes objects, on stdout.
struct ManifestsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifests",
        abstract: "Print a fleet as Kubernetes objects: the model-server Deployments (understudy serve), InferencePool, objectives, HTTPRoute and GIE's endpoint picker.")

    @Argument(help: "Fleet file (default: profiles/fleets/demo.yaml).") var fleetFile: String?
    @Option(help: "The model servers' image, built from the Containerfile.") var image = "understudy:latest"
    @Option(help: "The endpoint picker's image (GIE's EPP).") var pickerImage = KubernetesManifests.Options().pickerImage
    @Option(help: "The Gateway the HTTPRoute attaches to.") var gateway = "inference-gateway"

    func run() async throws {
        let profiles = try ProfileStore.locate()
        let path = fleetFile ?? profiles.root.appendingPathComponent("fleets/demo.yaml").path
        var options = KubernetesManifests.Options()
        options.image = image
        options.pickerImage = pickerImage
        options.gateway = gateway
        do {
            print(try KubernetesManifests.render(try FleetSpec.load(file: path), options: options))
        } catch {
            throw ValidationError("\(error)")
        }
    }
}

import ArgumentParser
import FleetManager

/// `understudy envoy-config`: the Envoy bootstrap `up --data-plane envoy` runs, with fixed
/// endpoints, for an Envoy of one's own in front of an endpoint picker.
struct EnvoyConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "envoy-config",
        abstract: "Print an Envoy configuration that routes by an endpoint picker over ext_proc (GIE's test config, plus what the picker protocol needs).")

    @Option(help: "Envoy's listener, IPv4:PORT.") var listen = "0.0.0.0:8080"
    @Option(help: "Envoy's admin listener port (on 127.0.0.1).") var adminPort = 19000
    @Option(help: "The endpoint picker's ext_proc address, IPv4:PORT.") var picker = "127.0.0.1:9002"
    @Flag(help: "Connect to the picker without TLS (the picker's --secure-serving=false).") var pickerPlaintext = false
    @Option(help: "The pool's endpoints, IPv4:PORT, comma-separated: where requests go that the picker did not route (FailOpen).")
    var poolEndpoints = ""
    @Flag(help: "The pool's failureMode is FailOpen: let requests through when the picker cannot be reached.") var failOpen = false

    func run() throws {
        guard let listener = Up.ipv4Endpoint(listen), let colon = listener.lastIndex(of: ":") else { throw ValidationError("--listen: IPv4:PORT") }
        guard let pickerAddress = Up.ipv4Endpoint(picker) else { throw ValidationError("--picker: IPv4:PORT") }
        let pool = poolEndpoints.split(separator: ",").map(String.init)
        let invalid = pool.filter { Up.ipv4Endpoint($0) == nil }
        guard invalid.isEmpty else { throw ValidationError("--pool-endpoints: IPv4:PORT, not \(invalid.joined(separator: ", "))") }
        var configuration = EnvoyConfiguration(listenerPort: Int(listener[listener.index(after: colon)...])!, adminPort: adminPort, pickerEndpoints: [pickerAddress])
        configuration.listenerHost = String(listener[..<colon])
        configuration.extProcTLS = !pickerPlaintext
        configuration.failureModeAllow = failOpen
        configuration.poolEndpoints = pool
        print(configuration.yaml, terminator: "")
    }
}

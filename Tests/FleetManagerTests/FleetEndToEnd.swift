import Testing

/// Suites that run real fleets (servers, gateway, load) go one at a time: on two shared cores,
/// one fleet's load would change another's timing (and the overload test measures capacity).
@Suite(.serialized) enum FleetEndToEnd {}

// The suites' shared helpers, by their short names.
typealias FleetTests = FleetEndToEnd.FleetTests
typealias KillScenarioTests = FleetEndToEnd.KillScenarioTests

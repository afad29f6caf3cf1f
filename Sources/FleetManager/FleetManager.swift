/// Brings up fleets of emulated pods and their gateway, and breaks them on purpose.
/// Built in issue 4; the only module that sees both FakeVLLM and Gateway.
public enum FleetManager {}

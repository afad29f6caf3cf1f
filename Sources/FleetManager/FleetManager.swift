/// Brings up fleets of emulated pods and their gateway, and breaks them on purpose (issue 4):
/// the fleet file (`FleetSpec`), the pods' lifecycle (`PodLifecycle`), and — to come — the
/// runtime, registry, admin API and chaos. The only module that sees both FakeVLLM and Gateway.
public enum FleetManager {}

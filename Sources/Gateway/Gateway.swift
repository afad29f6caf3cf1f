/// The inference gateway with GIE's endpoint picker. Built in issue 3; it will know pods only
/// through HTTP and their Prometheus metrics, never by importing FakeVLLM.
public enum Gateway {}

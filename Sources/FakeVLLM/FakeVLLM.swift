public enum FakeVLLM {}

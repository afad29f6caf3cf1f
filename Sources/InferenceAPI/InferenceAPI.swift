public enum InferenceAPI {}

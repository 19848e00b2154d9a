//! The model families a `.dlm` file can hold: the values of the `model.family` key.

/// A model family: one config-driven transformer, different published names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// GSAI-ML LLaDA (`LLaDAModelLM`).
    Llada,
    /// Dream (`DreamModel`, Qwen2 layout).
    Dream,
}

impl Family {
    /// The name written to `model.family`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Llada => "llada",
            Family::Dream => "dream",
        }
    }

    /// The family stored as `name`, or `None` for a name this build does not know.
    pub fn from_name(name: &str) -> Option<Self> {
        [Family::Llada, Family::Dream]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

//! The chat format stored in a `.dlm` file, as the runtime uses it: the pieces and their
//! assembly live in `dlm_formats::chat`, the same code the converter checks against the
//! checkpoint's template.

use crate::RuntimeError;
use dlm_formats::DlmFile;
pub use dlm_formats::chat::{ChatPieces, Role};

/// The chat format of a model file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatTemplate {
    pieces: ChatPieces,
}

impl ChatTemplate {
    /// The file's chat format, or `None` when it has none (`chat.user_prefix` absent).
    pub fn from_file(file: &DlmFile) -> Result<Option<Self>, RuntimeError> {
        Ok(ChatPieces::from_file(file)?.map(|pieces| ChatTemplate { pieces }))
    }

    /// The pieces.
    pub fn pieces(&self) -> &ChatPieces {
        &self.pieces
    }

    /// The text of a conversation, as the original template renders it; with
    /// `add_generation_prompt` it ends by opening the assistant's turn.
    pub fn render(&self, messages: &[(Role, &str)], add_generation_prompt: bool) -> String {
        self.pieces.assemble(messages, add_generation_prompt)
    }

    /// The text that continues a rendered conversation with one more user message and the
    /// opening of the assistant's turn (no conversation prefix, no default system message).
    pub fn next_turn(&self, user: &str) -> String {
        self.pieces.next_turn(user)
    }
}

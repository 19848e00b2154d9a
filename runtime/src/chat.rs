//! The chat format stored in a `.dlm` file: literal pieces around each message, reduced from the
//! checkpoint's Jinja template at convert time, so the runtime needs no template engine.

use crate::RuntimeError;
use dlm_formats::DlmFile;
use dlm_formats::keys::chat;

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions for the assistant.
    System,
    /// The person.
    User,
    /// The model.
    Assistant,
}

/// The pieces of the chat format (the `chat.*` keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatTemplate {
    prefix: String,
    system: (String, String),
    user: (String, String),
    assistant: (String, String),
    generation_prompt: String,
    default_system: String,
    trim_content: bool,
}

impl ChatTemplate {
    /// The file's chat format, or `None` when it has none (`chat.user_prefix` absent).
    pub fn from_file(file: &DlmFile) -> Result<Option<Self>, RuntimeError> {
        if file.meta_get(chat::USER_PREFIX).is_none() {
            return Ok(None);
        }
        let s =
            |k: &str| -> Result<String, RuntimeError> { Ok(file.get_str_or(k, "")?.to_string()) };
        Ok(Some(ChatTemplate {
            prefix: s(chat::PREFIX)?,
            system: (s(chat::SYSTEM_PREFIX)?, s(chat::SYSTEM_SUFFIX)?),
            user: (s(chat::USER_PREFIX)?, s(chat::USER_SUFFIX)?),
            assistant: (s(chat::ASSISTANT_PREFIX)?, s(chat::ASSISTANT_SUFFIX)?),
            generation_prompt: s(chat::GENERATION_PROMPT)?,
            default_system: s(chat::DEFAULT_SYSTEM)?,
            trim_content: file.get_bool_or(chat::TRIM_CONTENT, false)?,
        }))
    }

    /// The text of a conversation, as the original template renders it; with
    /// `add_generation_prompt` it ends by opening the assistant's turn.
    pub fn render(&self, messages: &[(Role, &str)], add_generation_prompt: bool) -> String {
        let mut out = self.prefix.clone();
        let has_system = messages.first().is_some_and(|m| m.0 == Role::System);
        if !has_system && !self.default_system.is_empty() {
            self.push_message(&mut out, Role::System, &self.default_system);
        }
        for (role, content) in messages {
            self.push_message(&mut out, *role, content);
        }
        if add_generation_prompt {
            out.push_str(&self.generation_prompt);
        }
        out
    }

    /// Append one message with its role's pieces around it.
    fn push_message(&self, out: &mut String, role: Role, content: &str) {
        let (pre, suf) = match role {
            Role::System => &self.system,
            Role::User => &self.user,
            Role::Assistant => &self.assistant,
        };
        out.push_str(pre);
        out.push_str(if self.trim_content {
            content.trim()
        } else {
            content
        });
        out.push_str(suf);
    }

    /// The text that continues a rendered conversation with one more user message and the
    /// opening of the assistant's turn (no conversation prefix, no default system message).
    pub fn next_turn(&self, user: &str) -> String {
        let mut out = String::new();
        self.push_message(&mut out, Role::User, user);
        out.push_str(&self.generation_prompt);
        out
    }
}

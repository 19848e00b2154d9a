//! The chat format stored in a `.dlm` file (the `chat.*` keys): literal pieces around each
//! message, reduced from the checkpoint's Jinja template at convert time, and the one function
//! that assembles a conversation from them. The converter checks this assembly against the
//! template; the runtime renders with it, so both use the same code.

use crate::keys::chat;
use crate::{DlmFile, FormatError};

/// The literal pieces of a chat format (the `chat.*` metadata keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChatPieces {
    /// Text once before the first message.
    pub prefix: String,
    /// Before a system message's content.
    pub system_prefix: String,
    /// After a system message's content.
    pub system_suffix: String,
    /// Before a user message's content.
    pub user_prefix: String,
    /// After a user message's content.
    pub user_suffix: String,
    /// Before an assistant message's content.
    pub assistant_prefix: String,
    /// After an assistant message's content.
    pub assistant_suffix: String,
    /// Opens the assistant's turn when a reply is wanted.
    pub generation_prompt: String,
    /// System message inserted when the conversation has none ("" = none).
    pub default_system: String,
    /// Contents are trimmed of surrounding whitespace.
    pub trim_content: bool,
}

/// A message role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `system`.
    System,
    /// `user`.
    User,
    /// `assistant`.
    Assistant,
}

impl Role {
    /// `system`, `user` or `assistant`.
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

impl ChatPieces {
    /// The text of a conversation assembled from the pieces (what the runtime does).
    pub fn assemble(&self, messages: &[(Role, &str)], add_generation_prompt: bool) -> String {
        let mut out = self.prefix.clone();
        let has_system = messages.first().is_some_and(|m| m.0 == Role::System);
        if !has_system && !self.default_system.is_empty() {
            self.push(Role::System, &self.default_system, &mut out);
        }
        for (role, content) in messages {
            self.push(*role, content, &mut out);
        }
        if add_generation_prompt {
            out.push_str(&self.generation_prompt);
        }
        out
    }

    /// Append one message with its role's pieces around it.
    fn push(&self, role: Role, content: &str, out: &mut String) {
        let (pre, suf) = match role {
            Role::System => (&self.system_prefix, &self.system_suffix),
            Role::User => (&self.user_prefix, &self.user_suffix),
            Role::Assistant => (&self.assistant_prefix, &self.assistant_suffix),
        };
        out.push_str(pre);
        out.push_str(if self.trim_content {
            content.trim()
        } else {
            content
        });
        out.push_str(suf);
    }
}

impl ChatPieces {
    /// The file's chat format, or `None` when it has none (`chat.user_prefix` absent).
    pub fn from_file(file: &DlmFile) -> Result<Option<Self>, FormatError> {
        if file.meta_get(chat::USER_PREFIX).is_none() {
            return Ok(None);
        }
        let s =
            |k: &str| -> Result<String, FormatError> { Ok(file.get_str_or(k, "")?.to_string()) };
        Ok(Some(ChatPieces {
            prefix: s(chat::PREFIX)?,
            system_prefix: s(chat::SYSTEM_PREFIX)?,
            system_suffix: s(chat::SYSTEM_SUFFIX)?,
            user_prefix: s(chat::USER_PREFIX)?,
            user_suffix: s(chat::USER_SUFFIX)?,
            assistant_prefix: s(chat::ASSISTANT_PREFIX)?,
            assistant_suffix: s(chat::ASSISTANT_SUFFIX)?,
            generation_prompt: s(chat::GENERATION_PROMPT)?,
            default_system: s(chat::DEFAULT_SYSTEM)?,
            trim_content: file.get_bool_or(chat::TRIM_CONTENT, false)?,
        }))
    }

    /// The text that continues an assembled conversation with one more user message and the
    /// opening of the assistant's turn (no conversation prefix, no default system message).
    pub fn next_turn(&self, user: &str) -> String {
        let mut out = String::new();
        self.push(Role::User, user, &mut out);
        out.push_str(&self.generation_prompt);
        out
    }
}

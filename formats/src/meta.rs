//! Typed metadata values.

/// One metadata value. Arrays are homogeneous.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Signed 32-bit integer.
    I32(i32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
    /// Boolean (one byte, 0 or 1).
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of u32.
    ArrU32(Vec<u32>),
    /// Array of i32.
    ArrI32(Vec<i32>),
    /// Array of f32.
    ArrF32(Vec<f32>),
    /// Array of UTF-8 strings.
    ArrStr(Vec<String>),
}

impl MetaValue {
    /// The type's name as `inspect` and errors print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::Str(_) => "str",
            MetaValue::ArrU32(_) => "[u32]",
            MetaValue::ArrI32(_) => "[i32]",
            MetaValue::ArrF32(_) => "[f32]",
            MetaValue::ArrStr(_) => "[str]",
        }
    }
}

//! `dlm_params`: every decoding knob of `dlm run` as a plain C struct, and its conversion to
//! the runtime's `DecodeParams`.
//!
//! The struct can grow: it starts with `struct_size` (what the caller compiled against) and
//! `version`, fields are only ever appended, and the library reads and writes just the
//! caller's `struct_size` bytes, taking the model's defaults for fields the caller lacks.

use super::status::Failure;
use dlm_runtime::decode::{Algorithm, CacheMode, DecodeParams, ElasticParams, Schedule};
use std::ffi::c_int;

/// LLaDA `low_confidence` (block schedule).
pub const DLM_ALG_LOW_CONFIDENCE: c_int = 0;
/// LLaDA `random` (block schedule).
pub const DLM_ALG_RANDOM: c_int = 1;
/// Dream `origin` (timestep schedule).
pub const DLM_ALG_ORIGIN: c_int = 2;
/// Dream `maskgit_plus` (timestep schedule).
pub const DLM_ALG_MASKGIT_PLUS: c_int = 3;
/// Dream `topk_margin` (timestep schedule).
pub const DLM_ALG_TOPK_MARGIN: c_int = 4;
/// Dream `entropy` (timestep schedule).
pub const DLM_ALG_ENTROPY: c_int = 5;
/// No KV cache: every step runs the whole canvas.
pub const DLM_CACHE_NONE: c_int = 0;
/// Fast-dLLM prefix cache.
pub const DLM_CACHE_PREFIX: c_int = 1;
/// Fast-dLLM dual cache.
pub const DLM_CACHE_DUAL: c_int = 2;
/// Elastic-Cache (`elastic_*` fields).
pub const DLM_CACHE_ELASTIC: c_int = 3;
/// The schedule the algorithm's original sampler uses.
pub const DLM_SCHEDULE_DEFAULT: c_int = 0;
/// LLaDA's semi-autoregressive blocks.
pub const DLM_SCHEDULE_BLOCKS: c_int = 1;
/// Dream's timesteps (in Fast-dLLM's blocks when a block length or a cache is given).
pub const DLM_SCHEDULE_TIMESTEPS: c_int = 2;
/// The layout version of this header's `dlm_params`.
pub const DLM_PARAMS_VERSION: c_int = 5;
/// The most token ids one call accepts (prompt ids, ids to detokenize).
pub const DLM_MAX_IDS: usize = 1 << 24;

/// The algorithm and cache constants with their names in `include/dlm.h`.
pub const ENUM_CONSTANTS: &[(&str, c_int)] = &[
    ("DLM_ALG_LOW_CONFIDENCE", DLM_ALG_LOW_CONFIDENCE),
    ("DLM_ALG_RANDOM", DLM_ALG_RANDOM),
    ("DLM_ALG_ORIGIN", DLM_ALG_ORIGIN),
    ("DLM_ALG_MASKGIT_PLUS", DLM_ALG_MASKGIT_PLUS),
    ("DLM_ALG_TOPK_MARGIN", DLM_ALG_TOPK_MARGIN),
    ("DLM_ALG_ENTROPY", DLM_ALG_ENTROPY),
    ("DLM_CACHE_NONE", DLM_CACHE_NONE),
    ("DLM_CACHE_PREFIX", DLM_CACHE_PREFIX),
    ("DLM_CACHE_DUAL", DLM_CACHE_DUAL),
    ("DLM_CACHE_ELASTIC", DLM_CACHE_ELASTIC),
    ("DLM_SCHEDULE_DEFAULT", DLM_SCHEDULE_DEFAULT),
    ("DLM_SCHEDULE_BLOCKS", DLM_SCHEDULE_BLOCKS),
    ("DLM_SCHEDULE_TIMESTEPS", DLM_SCHEDULE_TIMESTEPS),
    ("DLM_PARAMS_VERSION", DLM_PARAMS_VERSION),
];

/// Every knob of `dlm run`. Fill it with `dlm_params_default`, then change fields.
/// Zero means "off" where the comment says so.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct dlm_params {
    /// `sizeof(dlm_params)` as the caller compiled it; `dlm_params_default` sets it.
    pub struct_size: u32,
    /// `DLM_PARAMS_VERSION` of the layout; `dlm_params_default` sets it.
    pub version: u32,
    /// `DLM_ALG_*`: the position rule (and the default schedule).
    pub algorithm: c_int,
    /// `DLM_CACHE_*`.
    pub cache: c_int,
    /// Total denoising steps (an upper bound under threshold or factor).
    pub steps: u32,
    /// Tokens to generate after the prompt.
    pub gen_length: u32,
    /// Semi-autoregressive block length; 0 = one block of `gen_length`.
    pub block_length: u32,
    /// Sample among the k most likely tokens; 0 = off.
    pub top_k: u32,
    /// Fast-dLLM confidence threshold in (0, 1]; 0 = off.
    pub threshold: f64,
    /// Fast-dLLM factor rule; 0 = off.
    pub factor: f64,
    /// Sampling temperature; 0 = greedy.
    pub temperature: f64,
    /// Nucleus sampling in (0, 1]; 0 or 1 = off.
    pub top_p: f64,
    /// Classifier-free guidance scale; 0 = off (cache none only).
    pub cfg_scale: f64,
    /// Dream: temperature of the position choice; 0 = most confident first.
    pub alg_temp: f64,
    /// Dream: the last timestep, in (0, 1).
    pub eps: f64,
    /// Seed of every random choice; the same seed repeats a run.
    pub seed: u64,
    /// Nonzero: stop once the answer is final (never changes the answer).
    pub stop_early: c_int,
    /// Nonzero: wrap a text prompt in the model's chat template (as the user's turn).
    pub chat: c_int,
    /// `DLM_SCHEDULE_*`; `DLM_SCHEDULE_DEFAULT` takes the algorithm's own. (Version 2.)
    pub schedule: c_int,
    /// Elastic cache: masks of the active block whose queries a step computes. (Version 3.)
    pub elastic_window: u32,
    /// Elastic cache: refresh below this attention similarity, in [0, 1]. (Version 3.)
    pub elastic_gamma: f64,
    /// Elastic cache: most-attended tokens tracked per layer. (Version 3.)
    pub elastic_track: u32,
    /// Elastic cache: nonzero refreshes at every block start. (Version 3.)
    pub elastic_block_cache: c_int,
    /// With a threshold, the fewest positions a step commits (a step-distilled model's rule);
    /// 0 = Fast-dLLM's "at least one". (Version 4.)
    pub min_per_step: u32,
    /// Always 0. It fills what was version 4's tail padding, so that version 5 is longer
    /// than version 4 and `struct_size` alone tells them apart. (Version 5.)
    pub reserved0: u32,
    /// Elastic cache with `elastic_block_cache`: nonzero opens every later block over the
    /// decoded text and the block only, keeping the masks beyond it cached
    /// (`--prefix-refresh`). (Version 5.)
    pub elastic_prefix_refresh: c_int,
}

/// The bytes of version 2, the first layout with `struct_size`: the least a caller may give.
pub const MIN_PARAMS_SIZE: usize = std::mem::offset_of!(dlm_params, schedule) + 4;

/// The C id of an algorithm.
pub(crate) fn algorithm_id(a: Algorithm) -> c_int {
    match a {
        Algorithm::LowConfidence => DLM_ALG_LOW_CONFIDENCE,
        Algorithm::Random => DLM_ALG_RANDOM,
        Algorithm::Origin => DLM_ALG_ORIGIN,
        Algorithm::MaskgitPlus => DLM_ALG_MASKGIT_PLUS,
        Algorithm::TopkMargin => DLM_ALG_TOPK_MARGIN,
        Algorithm::Entropy => DLM_ALG_ENTROPY,
    }
}

fn algorithm_of(id: c_int) -> Option<Algorithm> {
    Algorithm::ALL.into_iter().find(|&a| algorithm_id(a) == id)
}

fn cache_id(c: CacheMode) -> c_int {
    match c {
        CacheMode::None => DLM_CACHE_NONE,
        CacheMode::Prefix => DLM_CACHE_PREFIX,
        CacheMode::Dual => DLM_CACHE_DUAL,
        CacheMode::Elastic => DLM_CACHE_ELASTIC,
    }
}

fn cache_of(id: c_int) -> Option<CacheMode> {
    CacheMode::ALL.into_iter().find(|&c| cache_id(c) == id)
}

fn schedule_id(s: Option<Schedule>) -> c_int {
    match s {
        None => DLM_SCHEDULE_DEFAULT,
        Some(Schedule::Blocks) => DLM_SCHEDULE_BLOCKS,
        Some(Schedule::Timesteps) => DLM_SCHEDULE_TIMESTEPS,
    }
}

fn schedule_of(id: c_int) -> Option<Option<Schedule>> {
    [None, Some(Schedule::Blocks), Some(Schedule::Timesteps)]
        .into_iter()
        .find(|&s| schedule_id(s) == id)
}

fn count(v: usize, what: &str) -> Result<u32, Failure> {
    u32::try_from(v).map_err(|_| Failure::invalid(format!("{what} {v} does not fit in 32 bits")))
}

impl dlm_params {
    /// The C form of `p`, with `chat` as given.
    pub(crate) fn from_decode(p: &DecodeParams, chat: bool) -> Result<Self, Failure> {
        Ok(dlm_params {
            struct_size: std::mem::size_of::<dlm_params>() as u32,
            version: DLM_PARAMS_VERSION as u32,
            algorithm: algorithm_id(p.algorithm),
            cache: cache_id(p.cache),
            steps: count(p.steps, "steps")?,
            gen_length: count(p.gen_length, "gen_length")?,
            block_length: count(p.block_length.unwrap_or(0), "block_length")?,
            top_k: count(p.top_k.unwrap_or(0), "top_k")?,
            threshold: p.threshold.unwrap_or(0.0),
            factor: p.factor.unwrap_or(0.0),
            temperature: p.temperature,
            top_p: p.top_p.unwrap_or(0.0),
            cfg_scale: p.cfg_scale,
            alg_temp: p.alg_temp,
            eps: p.eps,
            seed: p.seed,
            stop_early: c_int::from(p.stop_early),
            chat: c_int::from(chat),
            schedule: schedule_id(p.schedule),
            elastic_window: count(p.elastic.window, "elastic window")?,
            elastic_gamma: p.elastic.gamma,
            elastic_track: count(p.elastic.track, "elastic track")?,
            elastic_block_cache: c_int::from(p.elastic.block_cache),
            min_per_step: count(p.min_per_step.unwrap_or(0), "min_per_step")?,
            reserved0: 0,
            elastic_prefix_refresh: c_int::from(p.elastic.prefix_refresh),
        })
    }

    /// Read a caller's struct of `struct_size` bytes over `defaults`: fields beyond the
    /// caller's size keep their defaults.
    ///
    /// # Safety
    /// `src` is non-null, aligned, and readable for its own `struct_size` bytes.
    pub(crate) unsafe fn read_sized(
        src: *const dlm_params,
        defaults: Self,
    ) -> Result<Self, Failure> {
        // SAFETY: the first field is readable in every layout that has it.
        let size = unsafe { std::ptr::addr_of!((*src).struct_size).read() } as usize;
        check_size(size)?;
        let mut out = defaults;
        let n = size.min(std::mem::size_of::<dlm_params>());
        // SAFETY: the caller's struct holds `size` ≥ n readable bytes; `out` holds n writable
        // ones; plain-old-data of one layout, so any prefix copy is a valid value.
        unsafe {
            std::ptr::copy_nonoverlapping(src.cast::<u8>(), (&raw mut out).cast::<u8>(), n);
        }
        out.struct_size = n as u32;
        Ok(out)
    }

    /// Write the first `size` bytes of `self` to a caller's struct of `size` bytes.
    ///
    /// # Safety
    /// `dst` is non-null, aligned, and writable for `size` bytes.
    pub(crate) unsafe fn write_sized(
        mut self,
        dst: *mut dlm_params,
        size: usize,
    ) -> Result<(), Failure> {
        check_size(size)?;
        let n = size.min(std::mem::size_of::<dlm_params>());
        self.struct_size = n as u32;
        // SAFETY: `dst` holds `size` ≥ n writable bytes; `self` n readable ones.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const self).cast::<u8>(), dst.cast::<u8>(), n);
        }
        Ok(())
    }

    /// The runtime's form. Unknown enum values are an error here; ranges and combinations are
    /// checked by `DecodeParams::validate` when generating.
    pub(crate) fn to_decode(self) -> Result<DecodeParams, Failure> {
        let algorithm = algorithm_of(self.algorithm)
            .ok_or_else(|| Failure::invalid(format!("unknown algorithm {}", self.algorithm)))?;
        let cache = cache_of(self.cache)
            .ok_or_else(|| Failure::invalid(format!("unknown cache mode {}", self.cache)))?;
        let schedule = schedule_of(self.schedule)
            .ok_or_else(|| Failure::invalid(format!("unknown schedule {}", self.schedule)))?;
        let off_if_zero = |v: f64| (v != 0.0).then_some(v);
        Ok(DecodeParams {
            algorithm,
            steps: self.steps as usize,
            gen_length: self.gen_length as usize,
            block_length: (self.block_length != 0).then_some(self.block_length as usize),
            threshold: off_if_zero(self.threshold),
            // 0: Fast-dLLM's "at least one" under a threshold.
            min_per_step: (self.min_per_step != 0).then_some(self.min_per_step as usize),
            factor: off_if_zero(self.factor),
            cache,
            temperature: self.temperature,
            top_k: (self.top_k != 0).then_some(self.top_k as usize),
            top_p: (self.top_p != 0.0 && self.top_p != 1.0).then_some(self.top_p),
            cfg_scale: self.cfg_scale,
            alg_temp: self.alg_temp,
            eps: self.eps,
            seed: self.seed,
            stop_early: self.stop_early != 0,
            schedule,
            elastic: ElasticParams {
                window: self.elastic_window as usize,
                gamma: self.elastic_gamma,
                track: self.elastic_track as usize,
                block_cache: self.elastic_block_cache != 0,
                prefix_refresh: self.elastic_prefix_refresh != 0,
            },
            profile: false,
        })
    }
}

fn check_size(size: usize) -> Result<(), Failure> {
    if size < MIN_PARAMS_SIZE {
        return Err(Failure::invalid(format!(
            "dlm_params.struct_size is {size}, less than the {MIN_PARAMS_SIZE} bytes of version 2: fill the struct with dlm_params_default(model, &p, sizeof p)"
        )));
    }
    if size > 1 << 16 {
        return Err(Failure::invalid(format!(
            "dlm_params.struct_size is {size}: not a dlm_params"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_every_field() {
        let p = DecodeParams {
            algorithm: Algorithm::Random,
            steps: 64,
            gen_length: 32,
            block_length: Some(8),
            threshold: Some(0.9),
            min_per_step: Some(3),
            factor: None,
            cache: CacheMode::Dual,
            temperature: 0.7,
            top_k: Some(5),
            top_p: Some(0.95),
            cfg_scale: 1.5,
            alg_temp: 0.25,
            eps: 0.01,
            seed: 99,
            stop_early: false,
            schedule: Some(Schedule::Timesteps),
            elastic: ElasticParams {
                window: 5,
                gamma: 0.5,
                track: 2,
                block_cache: false,
                prefix_refresh: true,
            },
            profile: false,
        };
        let c = dlm_params::from_decode(&p, true).unwrap();
        assert_eq!(c.chat, 1);
        assert_eq!(c.to_decode().unwrap(), p);
        for a in Algorithm::ALL {
            let mut c = c;
            c.algorithm = algorithm_id(a);
            assert_eq!(c.to_decode().unwrap().algorithm, a);
        }
    }

    #[test]
    fn zeros_mean_off_and_unknown_enums_fail() {
        let mut c = dlm_params::from_decode(&DecodeParams::default(), false).unwrap();
        c.block_length = 0;
        c.top_p = 1.0;
        let d = c.to_decode().unwrap();
        assert_eq!(d.block_length, None);
        assert_eq!(d.top_p, None);
        assert_eq!(d.threshold, None);
        assert_eq!(d.top_k, None);
        c.algorithm = 6;
        assert!(c.to_decode().is_err());
        c.algorithm = 0;
        c.cache = -1;
        assert!(c.to_decode().is_err());
        c.cache = 0;
        c.schedule = 3;
        assert!(c.to_decode().is_err());
    }

    #[test]
    fn sized_reads_keep_defaults_beyond_the_callers_struct() {
        let mut defaults = dlm_params::from_decode(&DecodeParams::default(), false).unwrap();
        defaults.schedule = DLM_SCHEDULE_TIMESTEPS;
        let mut caller = defaults;
        caller.steps = 7;
        caller.schedule = DLM_SCHEDULE_BLOCKS;
        // A caller compiled against a layout that ends before `schedule`... is older than
        // version 2 and refused; one that has it is read whole.
        caller.struct_size = (MIN_PARAMS_SIZE - 4) as u32;
        // SAFETY: a live, aligned struct of full size.
        assert!(unsafe { dlm_params::read_sized(&caller, defaults) }.is_err());
        caller.struct_size = std::mem::size_of::<dlm_params>() as u32;
        // SAFETY: as above.
        let r = unsafe { dlm_params::read_sized(&caller, defaults) }.unwrap();
        assert_eq!((r.steps, r.schedule), (7, DLM_SCHEDULE_BLOCKS));
        caller.struct_size = 0;
        // SAFETY: as above.
        assert!(unsafe { dlm_params::read_sized(&caller, defaults) }.is_err());
        // A version-4 caller (its struct ends, padding included, where version 5's
        // elastic_prefix_refresh starts) keeps the default of the field it never knew.
        defaults.elastic_prefix_refresh = 1;
        caller.elastic_prefix_refresh = 0;
        let v4_size = std::mem::offset_of!(dlm_params, elastic_prefix_refresh);
        assert!(v4_size < std::mem::size_of::<dlm_params>() && v4_size % 8 == 0);
        caller.struct_size = v4_size as u32;
        // SAFETY: as above.
        let r = unsafe { dlm_params::read_sized(&caller, defaults) }.unwrap();
        assert_eq!((r.steps, r.elastic_prefix_refresh), (7, 1));
        caller.struct_size = std::mem::size_of::<dlm_params>() as u32;
        // SAFETY: as above.
        let r = unsafe { dlm_params::read_sized(&caller, defaults) }.unwrap();
        assert_eq!(r.elastic_prefix_refresh, 0);
        let mut out = defaults;
        out.steps = 0;
        // SAFETY: writable struct of full size.
        unsafe { defaults.write_sized(&mut out, std::mem::size_of::<dlm_params>()) }.unwrap();
        assert_eq!(out, defaults);
    }
}

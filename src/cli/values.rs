//! How the stages' plain enums are spelled on the command line: each gets its `clap::ValueEnum`
//! here, so no stage depends on clap. The names are the kebab-case names the enums' serde forms
//! use too; the help lines are what `--help` lists under "Possible values".

use crate::codegen::Lang;
use crate::data::pcap::{Grouping, Layers};
use crate::firmware::Kernels;
use crate::net::Dtype;
use crate::search::{Metric, Objective, Training};

/// `impl clap::ValueEnum for T` from `variant => "name", "help"` lines (an empty help is left out).
macro_rules! value_enum {
    ($ty:ident { $($variant:ident => $name:literal, $help:literal;)+ }) => {
        impl clap::ValueEnum for $ty {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($ty::$variant),+]
            }

            fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
                let (name, help) = match self {
                    $($ty::$variant => ($name, $help)),+
                };
                let v = clap::builder::PossibleValue::new(name);
                Some(if help.is_empty() { v } else { v.help(help) })
            }
        }
    };
}

value_enum!(Dtype {
    F32 => "f32", "float32 weights and activations";
    Int8 => "int8", "int8 weights and activations (TFLite / CMSIS-NN arithmetic)";
});

value_enum!(Lang {
    C => "c", "C99: NAME.h, NAME.c and NAME_weights.h (compiled with arm-none-eabi-gcc in firmware)";
    Rust => "rust", "A no_std Rust crate: Cargo.toml, src/lib.rs, src/weights.rs (a staticlib behind C entry points in firmware)";
});

value_enum!(Kernels {
    C => "c", "The C kernel only";
    Rust => "rust", "The Rust kernel only (fails when the profile's `toolchain.rust_target` is not installed)";
    Both => "both", "Both, side by side; the C kernel only, with a note saying how to install the Rust target, when that target is not installed";
});

value_enum!(Objective {
    Score => "score", "The child with the best validation score (the seed's rule)";
    Pareto => "pareto", "A child on the run's Pareto front (score, flash, RAM, latency), drawn at random (seeded); the score rule when no child is on it";
});

value_enum!(Training {
    Proxy => "proxy", "One stratified fold held out for validation (the seed's default during search)";
    Full => "full", "k-fold cross-validation: the score is the mean over folds (the seed's `use_full_training`)";
});

value_enum!(Metric {
    Accuracy => "accuracy", "";
    WeightedF1 => "weighted-f1", "";
    MacroF1 => "macro-f1", "";
});

value_enum!(Grouping {
    Session => "session", "Both directions of a 5-tuple (protocol, addresses, ports)";
    Flow => "flow", "One direction of a 5-tuple";
});

value_enum!(Layers {
    All => "all", "The whole captured frame, link-layer header included";
    L7 => "l7", "The TCP or UDP payload only";
});

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    /// The command-line names are the serde names, so a value read from a run's config.json
    /// and one given as an argument are spelled alike.
    #[test]
    fn names_match_the_serde_names() {
        fn check<T: ValueEnum + serde::Serialize>() {
            for v in T::value_variants() {
                let name = v.to_possible_value().unwrap().get_name().to_string();
                let json = serde_json::to_value(v).unwrap();
                assert_eq!(json.as_str(), Some(name.as_str()));
            }
        }
        check::<crate::net::Dtype>();
        check::<crate::codegen::Lang>();
        check::<crate::search::Objective>();
        check::<crate::search::Training>();
        check::<crate::search::Metric>();
        check::<crate::data::pcap::Grouping>();
        check::<crate::data::pcap::Layers>();
    }
}

//! A component's imports and exports, read before anything is compiled: a
//! component built for another world fails in milliseconds with the name
//! of what does not fit, instead of after a compile that takes seconds for
//! a big (Python, JavaScript) component.
//!
//! Only names are checked here; the linker checks the types after the
//! compile, as before.

use crate::error::LoadError;
use wasmparser::{Parser, Payload};

/// WASI 0.2 packages the runtime links (any 0.2.x: the linker matches
/// semver-compatible versions).
const WASI_PACKAGES: [&str; 7] = [
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:filesystem/",
    "wasi:io/",
    "wasi:random/",
    "wasi:sockets/",
    "wasi:http/",
];

/// What a processor may import, for the message of a refusal.
pub const PROVIDED: &str = "eddy:processor/host@0.2.0 (or 0.1.0), wasi:config/store@0.2.0-rc.1 and WASI 0.2 \
     (cli, clocks, filesystem, io, random, sockets, http types and outgoing-handler)";

fn provided(name: &str) -> bool {
    let Some((package, version)) = name.split_once('@') else {
        return false;
    };
    if let Some(interface) = package.strip_prefix("eddy:processor/") {
        return matches!(interface, "host" | "types")
            && (version.starts_with("0.1.") || version.starts_with("0.2."));
    }
    if package == "wasi:config/store" {
        return version == "0.2.0-rc.1";
    }
    if package == "wasi:http/incoming-handler" {
        return false;
    }
    WASI_PACKAGES.iter().any(|p| package.starts_with(p)) && version.starts_with("0.2.")
}

/// Checks that `bytes` (a component) imports only what Eddy provides and
/// exports `handle`.
pub fn check_imports(bytes: &[u8]) -> Result<(), LoadError> {
    let bad = |m: String| LoadError::InvalidModule(m);
    let mut depth = 0usize;
    let mut handle = false;
    let mut unknown = Vec::new();
    // A component that does not parse is left to the compiler, whose
    // message says where; what was read before the fault still counts.
    let mut complete = true;
    'payloads: for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else {
            complete = false;
            break;
        };
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 1 => {
                for import in reader {
                    let Ok(import) = import else {
                        complete = false;
                        break 'payloads;
                    };
                    // Types the world `use`s are imported by name; only
                    // instances and functions must come from the host.
                    if !matches!(import.ty, wasmparser::ComponentTypeRef::Type(_))
                        && !provided(import.name.name)
                    {
                        unknown.push(import.name.name.to_string());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 1 => {
                for export in reader {
                    let Ok(export) = export else {
                        complete = false;
                        break 'payloads;
                    };
                    handle |= export.name.name == "handle";
                }
            }
            _ => {}
        }
    }
    if !unknown.is_empty() {
        return Err(bad(format!(
            "the component imports {}, which Eddy does not provide (a processor may import {PROVIDED})",
            unknown
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if complete && !handle {
        return Err(bad(
            "the component does not export `handle`: a processor implements the \
             eddy:processor@0.2.0 world (`eddy wit` prints it)"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_eddy_provides() {
        for ok in [
            "eddy:processor/host@0.1.0",
            "eddy:processor/types@0.1.0",
            "eddy:processor/host@0.2.0",
            "eddy:processor/types@0.2.0",
            "wasi:io/streams@0.2.6",
            "wasi:http/outgoing-handler@0.2.0",
            "wasi:config/store@0.2.0-rc.1",
            "wasi:cli/environment@0.2.3",
        ] {
            assert!(provided(ok), "{ok}");
        }
        for no in [
            "eddy:processor/host@0.3.0",
            "eddy:processor/host@1.0.0",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:io/streams@0.3.0",
            "wasi:config/store@0.2.0-draft",
            "wasi:http/incoming-handler@0.2.0",
            "my:own/thing@1.0.0",
            "wasi:io/streams",
        ] {
            assert!(!provided(no), "{no}");
        }
    }

    #[test]
    fn a_foreign_import_fails_before_the_compile() {
        let component = wat::parse_str(
            r#"(component
                (import "wasi:keyvalue/store@0.2.0-draft" (instance))
                (core module $m (func (export "f")))
            )"#,
        )
        .unwrap();
        let e = check_imports(&component).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid module: the component imports `wasi:keyvalue/store@0.2.0-draft`, which Eddy does not provide"),
            "{e}"
        );
        let empty = wat::parse_str("(component)").unwrap();
        let e = check_imports(&empty).unwrap_err().to_string();
        assert!(e.contains("does not export `handle`"), "{e}");
    }
}

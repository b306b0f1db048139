//! Parameter structs declared once for a host file and its shader.
//!
//! `wgsl_struct!` declares a `#[repr(C)]` struct for the host and gives it the WGSL
//! declaration of the same struct, which `source.rs` puts before the shader's text. Shaders
//! do not spell their parameters out, so the two sides cannot drift apart.

/// A host type as WGSL names it, with the same layout.
pub(crate) trait Wgsl {
    const NAME: &'static str;
    /// Appends the WGSL declarations this type needs, its fields' types' first.
    fn declare(_out: &mut String) {}
}

impl Wgsl for u32 {
    const NAME: &'static str = "u32";
}

impl Wgsl for f32 {
    const NAME: &'static str = "f32";
}

/// Eight values as two vec4s: an array in a uniform takes 16-byte strides.
impl Wgsl for [u32; 8] {
    const NAME: &'static str = "array<vec4<u32>, 2>";
}

/// Declares a `#[repr(C)]`, `Pod` parameter struct whose fields are [`Wgsl`] types, and
/// implements [`Wgsl`] for it (its WGSL declaration).
macro_rules! wgsl_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field: $ty,)*
        }

        impl $crate::params::Wgsl for $name {
            const NAME: &'static str = stringify!($name);
            fn declare(out: &mut String) {
                $(<$ty as $crate::params::Wgsl>::declare(out);)*
                out.push_str(concat!("struct ", stringify!($name), " {\n"));
                $(
                    out.push_str(&format!(
                        "    {}: {},\n",
                        stringify!($field),
                        <$ty as $crate::params::Wgsl>::NAME
                    ));
                )*
                out.push_str("}\n\n");
            }
        }
    };
}

//! The `viasock top` monitor (SPEC 8); not built yet.

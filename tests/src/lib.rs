//! Integration tests of the whole workspace: see integration/.

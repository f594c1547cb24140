//! The `contrastive` command-line tool (built with the default `cli` feature).

fn main() {
    std::process::exit(contrastive::cli::main());
}

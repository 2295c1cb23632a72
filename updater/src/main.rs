fn main() {
    println!("updater: not implemented yet (see its issue)");
}

fn main() {
    println!("sd-sync: not implemented yet (see its issue)");
}

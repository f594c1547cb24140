//! The README's autodiff example: a linear layer, ReLU and cross-entropy, differentiated.

use contrastive::{Result, Tensor};
use rand::{SeedableRng, rngs::StdRng};

fn main() -> Result<()> {
    let mut rng = StdRng::seed_from_u64(0);
    let w = Tensor::<f32>::randn([4, 3], &mut rng).requires_grad_(); // a parameter
    let x = Tensor::<f32>::randn([8, 4], &mut rng); // a batch of inputs
    let labels = [0, 2, 1, 0, 1, 2, 2, 0];
    let loss = x.matmul(&w)?.relu().cross_entropy(&labels)?; // records the graph
    let grads = loss.backward()?; // a fresh map each call
    let dw = grads.get(&w).expect("w is a tracked leaf");
    println!(
        "loss {:.4}, |dL/dw| {:.4}",
        loss.item()?,
        dw.square().sum_all()?.sqrt().item()?
    );
    Ok(())
}

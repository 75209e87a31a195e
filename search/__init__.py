"""fetta.search: tensor-network IR, TNN layers, contraction-sequence search and the compiler."""

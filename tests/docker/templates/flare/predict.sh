mkdir -p scratch
python predict.py -i /workspace/inputs -o /workspace/outputs --scratch scratch
